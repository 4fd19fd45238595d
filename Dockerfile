# pushgate: a static binary on distroless, running as the non-root user
# 65532 with no shell. Build from the repository root:
#
#   docker build -t pushgate:latest .
#
# deploy/k8s_test.go runs the build command below (the RUN line with
# `go build`) and checks that the binary is static.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, in their own layer: it is rebuilt only when go.mod or
# go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/pushgate ./cmd/gateway

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pushgate /pushgate
USER 65532:65532
# ws (public: /ws, /echo, the demo page) and admin (publish API, /metrics,
# probes): the --addr and --admin-addr default ports. The admin listener
# binds loopback unless PUSHGATE_ADMIN_ADDR says otherwise (the k8s base
# sets :9090, with the API key from a file).
EXPOSE 8080 9090
ENTRYPOINT ["/pushgate"]
