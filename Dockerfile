# syntax=docker/dockerfile:1
#
# ebpf-receiver container image: a multi-stage build.
#
#   docker build -t ebpf-receiver:0.1.0 .
#
# NOTE: this file is not built by CI or on the development VM (there is no Docker engine
# there); `cargo xtask test` builds the same binary with the same toolchain pins natively. Keep
# the pins below in step with integration/src/bootstrap.rs and ebpf/probes/rust-toolchain.toml.
#
# ---------------------------------------------------------------------------------------------
# Runtime needs (the image alone is not enough; see config/kubernetes/sidecar.yaml):
#
# * Capabilities: exactly these four, nothing else, never privileged mode (the receiver checks
#   them at start and stops naming any that is missing; `ebpf-receiver check` lists them):
#     CAP_BPF              create maps and ring buffers, load programs
#     CAP_PERFMON          load tracing programs, attach them to syscall tracepoints
#     CAP_SYS_PTRACE       pidfd_getfd(2) and /proc/<pid>/{fd,exe,environ} of traced processes
#     CAP_DAC_READ_SEARCH  read tracefs (mode 0700) and other users' /proc/<pid>/fd
#   CAP_SYS_ADMIN and CAP_SYS_RESOURCE are not needed (since Linux 5.11 BPF memory is charged to
#   the memory cgroup; on 5.8-5.10 raise the limit instead: `--ulimit memlock=-1`). Some
#   runtimes' default seccomp profile blocks bpf(2): use `--security-opt seccomp=unconfined` /
#   `seccompProfile: {type: Unconfined}` when `ebpf-receiver check` says so.
# * tracefs at /sys/kernel/tracing (syscall tracepoints): bind-mount the host's,
#   `-v /sys/kernel/tracing:/sys/kernel/tracing`.
# * /sys/kernel/btf/vmlinux (read-only) for `ebpf-receiver check` and kernel feature probing:
#   `-v /sys/kernel/btf:/sys/kernel/btf:ro`.
# * The traced processes' PID namespace: `docker run --pid=host` (whole host, DaemonSet-style)
#   or `--pid=container:<app>`; in Kubernetes `shareProcessNamespace: true` (sidecar) or
#   `hostPID: true` (per node). Pids in spans and `targets.pids` are as seen from that namespace.
# * A Collector reachable over OTLP/gRPC (default http://localhost:4317; OTEL_EXPORTER_OTLP_ENDPOINT
#   overrides the file). Self-metrics are served on 127.0.0.1:9464 by default; set
#   `telemetry.metrics_address: 0.0.0.0:9464` to scrape them from outside the pod.
#
# Example:
#   docker run --rm --pid=host --cap-drop ALL --cap-add BPF --cap-add PERFMON \
#     --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH --security-opt seccomp=unconfined \
#     -v /sys/kernel/tracing:/sys/kernel/tracing -v /sys/kernel/btf:/sys/kernel/btf:ro \
#     --network host -e OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 ebpf-receiver:0.1.0
# ---------------------------------------------------------------------------------------------

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- builder: stable Rust for user space, the pinned nightly + rust-src and bpf-linker (LLVM 22)
# --- for the kernel programs, which receiver/build.rs compiles for bpfel-unknown-none.
FROM ${RUST_IMAGE} AS builder
ARG NIGHTLY=nightly-2026-05-20
ARG BPF_LINKER_VERSION=0.13.0

# LLVM 22 (bpf-linker links against it; it matches the nightly's LLVM). On bookworm it comes
# from the bookworm-security suite, enabled in the official images; apt.llvm.org's
# llvm-toolchain-bookworm-22 provides the same packages otherwise.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      llvm-22-dev libpolly-22-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*

RUN rustup toolchain install ${NIGHTLY} --profile minimal --component rust-src

RUN LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 PATH=/usr/lib/llvm-22/bin:$PATH \
    cargo install bpf-linker --version ${BPF_LINKER_VERSION} --locked \
      --no-default-features --features llvm-22

WORKDIR /src
# Only what the build needs (no target/ from a developer checkout in the context).
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY ebpf ebpf
COPY receiver receiver
COPY integration integration
COPY config config

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ebpf-receiver \
 && install -D -m 0755 target/release/ebpf-receiver /out/ebpf-receiver

# --- runtime: glibc of the same Debian release, CA certificates for https:// endpoints.
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/ebpf-receiver /usr/local/bin/ebpf-receiver
COPY config/receiver.yaml /etc/ebpf-receiver/receiver.yaml
# Runs as uid 0 inside the container with only the four capabilities above: they are what grant
# access (a non-root user would lose them at exec: containers get no ambient capabilities).
LABEL io.ebpf-receiver.capabilities="BPF,PERFMON,SYS_PTRACE,DAC_READ_SEARCH"
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/ebpf-receiver"]
CMD ["--config", "/etc/ebpf-receiver/receiver.yaml"]
