# The `tesp runner` image (node dist/main.js runner: a Pulsar-compatible runner on port 8913). Its job scripts run
# with bash and start executor containers with the docker CLI on the host's engine, through its socket.
# Build from the project root: docker build -f docker/runner.Dockerfile -t tesp-runner .
# The build stage is docker/Dockerfile's, instruction for instruction, so the two images share its cached layers.
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source where no prebuilt binary can be downloaded.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Debian ships the docker CLI only inside docker.io, with the daemon, containerd, runc and iptables. The CLI is one
# binary linked against libc alone: it is taken from there, and nothing else of docker.io is kept.
FROM node:20-bookworm-slim AS docker-cli
RUN apt-get update && apt-get install -y --no-install-recommends docker.io && rm -rf /var/lib/apt/lists/*

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production TESP_PROFILE=docker
COPY --from=docker-cli /usr/bin/docker /usr/bin/docker
# bash is part of every Debian base image (essential); the job scripts need it, so the build checks it is there.
RUN command -v bash && docker --version
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY settings ./settings
COPY openapi ./openapi
COPY docker/healthcheck.js ./docker/healthcheck.js
# Runs as root, on purpose. Access to the Docker socket is root on the host already (a non-root user in the socket's
# group gains no safety), and executor containers run as their image's user, mostly root: they leave root-owned
# files in the job directory, which the runner must be able to delete when it cleans the job.
EXPOSE 8913
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["node", "docker/healthcheck.js", "runner"]
CMD ["node", "--no-warnings", "dist/main.js", "runner"]
