# One image for both processes:
#   API     node dist/api/main.js   (the default command)
#   worker  node --max-semi-space-size=4 dist/worker.js   (docker-compose.yml overrides the command;
#           the option is WORKER_NODE_FLAGS in src/worker.ts)
# Both read their configuration from the environment (see .env.example) and apply pending
# knex migrations at start. The worker bundles dist/workflows/index.js at start with the
# webpack/swc that @temporalio/worker (a regular dependency) brings, so no dev dependency is needed.
#
# argon2 is compiled from source, as in .ci/run: its prebuilt linux-x64 binary segfaults on load
# on some hosts. The compilers stay in the build stages; the runtime stage gets the result.
# `npm ci` here is the npm 10 bundled with the node:20 images, which accepts package-lock.json
# (npm 11 refuses it, see .ci/run).

ARG NODE_IMAGE=node:20-bookworm-slim

##### toolchain: node + what node-gyp needs #####
FROM ${NODE_IMAGE} AS toolchain
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./

##### build: compile TypeScript to dist/ #####
FROM toolchain AS build
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

##### prod-deps: production dependencies only, argon2 built from source #####
FROM toolchain AS prod-deps
ENV NODE_ENV=production
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm_config_build_from_source=true npm rebuild argon2 \
 && node -e "require('argon2').hash('image-build').then(() => console.log('argon2 loads'))" \
 && npm cache clean --force

##### runtime: no compilers, no dev dependencies #####
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Files stay owned by root: the service only reads them.
USER node
EXPOSE 3000
CMD ["node", "dist/api/main.js"]
