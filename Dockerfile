# Multi-stage build of a static, non-root gateway image.
#   docker build -t rw-gateway .
#   docker run -p 9201:9201 -v $PWD/gateway.yml:/etc/gateway/gateway.yml rw-gateway
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/gateway /bin/gateway
USER 65532:65532
EXPOSE 9201
VOLUME ["/data"]
ENTRYPOINT ["/bin/gateway"]
CMD ["--config.file=/etc/gateway/gateway.yml", "--storage.path=/data"]
