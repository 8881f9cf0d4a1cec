//! Generates the gRPC code with the vendored protoc, so no system protoc is needed.
//! madsim-tonic-build writes both the real and the simulated code; `include_proto!`
//! picks the right one per cfg.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    // Read at run time, not with env!(): the compiled build script is shared between
    // checkouts that use one target dir (a CI cache), and a path baked in at compile time
    // made a clone generate code from another checkout's (older) .proto files.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [root.join("tidemark/v1/tidemark.proto"), root.join("tidemark/v1/raft.proto")];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_build::configure().bytes(["."]).compile_protos(&files, &[root])?;
    Ok(())
}
