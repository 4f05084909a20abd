# The development broker as an image (used by docker-compose.yml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p metaq-broker

FROM debian:bookworm-slim
COPY --from=build /src/target/release/metaq-broker /usr/local/bin/metaq-broker
ENTRYPOINT ["metaq-broker"]
