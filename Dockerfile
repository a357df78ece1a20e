# One image holds every Spotwright binary; the manifests pick one with `command`.
# Build: docker build -t ghcr.io/spotwright/spotwright:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/spotwright-webhook target/release/spotwright-certs target/release/spotwright-extender /out/

# distroless: no shell, no package manager; `nonroot` is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT []
