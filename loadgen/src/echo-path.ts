/** Where loadgen's echo server answers. */
export const ECHO_PATH = '/bench.Echo/Echo';
