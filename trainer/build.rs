//! Gives every binary and test of this crate an rpath to libtorch, so that
//! `karpa-train` runs without LD_LIBRARY_PATH. LIBTORCH comes from
//! .cargo/config.toml (a link set up by `cargo xtask`), or from the environment.

fn main() {
    // The rpath depends on LIBTORCH alone. (A rerun would rebuild the harness:
    // recipe.toml and the configs reach it through include_str!, tracked anyway.)
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(root) = std::env::var("LIBTORCH") {
        let lib = std::path::Path::new(&root).join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
