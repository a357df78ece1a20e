# One image holds every Spotwright program the manifests run; they pick one with
# `command` (spotwright-webhook, spotwright-certs, spotwright-extender,
# spotwright-provisioner). scripts/build-image builds the same image as an OCI
# archive without a container engine (docs/install.md, "The image"); this file
# is for those who build with one:
#   docker build -t ghcr.io/spotwright/spotwright:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p spotwright-webhook -p spotwright-certs -p spotwright-extender -p spotwright-provisioner \
      --bin spotwright-webhook --bin spotwright-certs --bin spotwright-extender --bin spotwright-provisioner \
 && mkdir /out \
 && cp target/release/spotwright-webhook target/release/spotwright-certs \
       target/release/spotwright-extender target/release/spotwright-provisioner /out/

# distroless cc (Debian 12: glibc, libgcc_s, CA certificates, /etc/passwd with
# `nonroot` 65532): no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT []
