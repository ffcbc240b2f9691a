# syntax=docker/dockerfile:1
# One image for every Node service of the mesh (pick one with the compose `command`), plus
# Envoy with the mesh's config and descriptor set. Targets: runtime (default), envoy.

FROM node:20.19.5-bookworm-slim AS build
WORKDIR /app
COPY . .
# The generated stubs and descriptor set are committed (CI's gen:check keeps them current), so no
# protoc here; npm ci runs the root `prepare` (tsc --build).
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM envoyproxy/envoy:v1.34.1 AS envoy
COPY envoy/envoy.yaml /etc/envoy/envoy.yaml
COPY --from=build /app/proto/descriptors/redpacket.pb /etc/envoy/redpacket.pb

FROM node:20.19.5-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=node:node /app /app
USER node
CMD ["npm", "start", "-w", "grab-svc"]
