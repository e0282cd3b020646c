#!/usr/bin/env bash
# Regenerates src/generated/*.rs from proto/*.proto. Needs `protoc` (Debian: protobuf-compiler)
# and is run by hand after editing a .proto; builds never run it, so CI needs no protoc.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$root/target/cri-gen"
mkdir -p "$work/src"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "cri-gen"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
tonic-prost-build = "0.14"
TOML
cat > "$work/src/main.rs" <<'RS'
fn main() {
    let mut args = std::env::args().skip(1);
    let proto_dir = args.next().expect("proto dir");
    let out_dir = args.next().expect("out dir");
    let include = args.next().unwrap_or_else(|| "/usr/include".into());
    std::fs::create_dir_all(&out_dir).expect("out dir");
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .out_dir(&out_dir)
        .compile_protos(
            &[format!("{proto_dir}/runtime_v1.proto"), format!("{proto_dir}/containerd_events.proto")],
            &[proto_dir.clone(), include],
        )
        .expect("compiling protos");
}
RS
PROTOC="${PROTOC:-/usr/bin/protoc}" cargo run --quiet --offline --manifest-path "$work/Cargo.toml" \
  --target-dir "$root/target/cri-gen/target" -- "$here/proto" "$here/src/generated"
rustfmt --edition 2021 "$here"/src/generated/*.rs
echo "generated: $(ls "$here"/src/generated)"
