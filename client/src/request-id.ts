/** The request id header, the same name the servers read and echo (lib's REQUEST_ID_HEADER). */
export const REQUEST_ID_HEADER = 'x-request-id';
