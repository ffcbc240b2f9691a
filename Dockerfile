# syntax=docker/dockerfile:1
# One image for every Node service of the mesh (pick one with the compose `command`), plus
# Envoy with the mesh's config and descriptor set. Targets: runtime (default), envoy.

FROM node:20.19.5-bookworm-slim AS build
RUN apt-get update \
  && apt-get install -y --no-install-recommends protobuf-compiler \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
# npm ci runs the root `prepare` (tsc --build); gen:check proves the committed stubs are current.
RUN npm ci --no-audit --no-fund && npm run gen:check && npm prune --omit=dev

FROM envoyproxy/envoy:v1.34.1 AS envoy
COPY envoy/envoy.yaml /etc/envoy/envoy.yaml
COPY --from=build /app/proto/descriptors/redpacket.pb /etc/envoy/redpacket.pb

FROM node:20.19.5-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=node:node /app /app
USER node
CMD ["npm", "start", "-w", "grab-svc"]
