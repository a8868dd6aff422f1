//! The diff scan's Rust check: a syn AST walk over every recipe source file of the
//! patched tree. Recipe code may compute; it may not reach outside the process
//! (files, sockets, processes, the environment, threads), step outside Rust's
//! safety (unsafe, FFI, asm, link attributes), pull bytes in at compile time
//! (include!, env!), or hide any of that behind aliases, globs or macros.
//! Every finding carries its line, so the check run can annotate the diff.

use super::Finding;
use proc_macro2::{Span, TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// Macros that read the build machine or leave Rust's safety.
const MACROS: &[&str] =
    &["asm", "global_asm", "naked_asm", "include", "include_bytes", "include_str", "env", "option_env", "llvm_asm"];
/// `std`/`core`/`alloc` modules that reach outside the process.
const MODULES: &[&str] = &["fs", "net", "process", "env", "os", "thread", "ffi", "arch", "intrinsics"];
const ROOTS: &[&str] = &["std", "core", "alloc"];
/// tch functions and types that read or write files (or load TorchScript).
/// Complete for the locked tch: `scan/tch_api.rs` derives every public function
/// that takes a path from tch's own source and fails when one is missing here.
/// Denied by name wherever it appears (a path, a method call, a macro's tokens),
/// so aliases and glob imports do not hide them.
const TCH_IO: &[&str] = &[
    "save",
    "load",
    "save_multi",
    "load_multi",
    "save_to_stream",
    "load_from_stream",
    "load_partial",
    "read_npy",
    "read_npz",
    "write_npy",
    "write_npz",
    "read_safetensors",
    "write_safetensors",
    "from_file",
    "f_from_file",
    "from_file_out",
    "f_from_file_out",
    "fill_safetensors",
    "load_multi_with_device",
    "loadz_multi",
    "loadz_multi_with_device",
    "load_dir",
    "load_from_dir",
    "load_and_resize",
    "load_image",
    "load_image_and_resize",
    "load_image_and_resize224",
    "save_image",
    "load_hwc",
    "save_hwc",
    // Takes a path only to name it in an error, but recipe code has no use for it.
    "path_context",
    "CModule",
    "TrainableCModule",
    "TextData",
];
/// Attributes that change linking, symbol names or module paths.
const ATTRIBUTES: &[&str] =
    &["no_mangle", "link", "link_name", "link_section", "export_name", "path", "used", "naked", "unsafe", "linkage"];

/// Scans every recipe source file (`recipe/src/**.rs`) of a tree given as
/// (path, bytes). The whole recipe is scanned, not only the changed lines: a
/// macro defined in one file can be used in another.
pub fn scan_tree(files: &[(String, Vec<u8>)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (path, bytes) in files.iter().filter(|(p, _)| p.starts_with("recipe/src/") && p.ends_with(".rs")) {
        match std::str::from_utf8(bytes) {
            Ok(source) => out.extend(scan_file(path, source)),
            Err(_) => out.push(Finding::reject("scan.parse", path, None, "not UTF-8")),
        }
    }
    out
}

/// Scans one recipe source file; an unparsable file is itself a finding.
pub fn scan_file(path: &str, source: &str) -> Vec<Finding> {
    let file = match syn::parse_file(source) {
        Ok(f) => f,
        Err(e) => {
            return vec![Finding::reject(
                "scan.parse",
                path,
                Some(e.span().start().line),
                format!("does not parse as Rust: {e}"),
            )]
        }
    };
    let mut v = Scanner { path, findings: Vec::new() };
    v.visit_file(&file);
    v.findings.sort_by_key(|f| f.line);
    v.findings.dedup();
    v.findings
}

struct Scanner<'a> {
    path: &'a str,
    findings: Vec<Finding>,
}

fn line(span: Span) -> Option<usize> {
    Some(span.start().line)
}

impl Scanner<'_> {
    fn flag(&mut self, code: &'static str, span: Span, message: impl Into<String>) {
        self.findings.push(Finding::reject(code, self.path, line(span), message));
    }

    /// A path given as its segment names: `std::fs::read`, `::std::net`, `libc::open`.
    fn check_segments(&mut self, segs: &[String], span: Span) {
        let Some(first) = segs.first() else { return };
        if ROOTS.contains(&first.as_str()) {
            if let Some(m) = segs.get(1).filter(|m| MODULES.contains(&m.as_str())) {
                self.flag("scan.io", span, format!("`{first}::{m}` reaches outside the process"));
            }
        }
        if let Some(s) = segs.iter().find(|s| *s == "libc") {
            self.flag("scan.ffi", span, format!("`{s}` is foreign code"));
        }
        if let Some(s) = segs.iter().find(|s| TCH_IO.contains(&s.as_str())) {
            self.flag("scan.io", span, format!("`{s}` reads or writes files"));
        }
        if first == "tch" && segs.iter().any(|s| s == "vision" || s == "data") {
            self.flag("scan.io", span, "tch's vision and data modules read files");
        }
    }

    /// Token streams the AST does not parse (macro bodies and arguments): look for
    /// forbidden macros, `unsafe`/`extern`, and forbidden paths by their tokens.
    fn check_tokens(&mut self, tokens: TokenStream) {
        let flat = flatten(tokens);
        for (i, (tok, span)) in flat.iter().enumerate() {
            let next = flat.get(i + 1).map(|(t, _)| t.as_str());
            match tok.as_str() {
                m if MACROS.contains(&m) && next == Some("!") => {
                    self.flag("scan.macro", *span, format!("`{m}!` inside a macro"))
                }
                "unsafe" => self.flag("scan.unsafe", *span, "`unsafe` inside a macro"),
                "extern" => self.flag("scan.ffi", *span, "`extern` inside a macro"),
                _ => {}
            }
            // A path spelled as tokens: ident (:: ident)*.
            if i == 0 || flat[i - 1].0 != "::" {
                let mut segs = vec![tok.clone()];
                let mut j = i + 1;
                while flat.get(j).is_some_and(|(t, _)| t == "::") {
                    match flat.get(j + 1) {
                        Some((t, _)) if is_ident(t) => segs.push(t.clone()),
                        _ => break,
                    }
                    j += 2;
                }
                if is_ident(tok) && (segs.len() > 1 || TCH_IO.contains(&tok.as_str()) || tok == "libc") {
                    self.check_segments(&segs, *span);
                }
            }
        }
    }

    fn check_use(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.check_use(&p.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                let mut full = prefix.clone();
                if name != "self" {
                    full.push(name);
                }
                self.check_segments(&full, n.ident.span());
            }
            syn::UseTree::Rename(r) => {
                let name = r.ident.to_string();
                let mut full = prefix.clone();
                if name != "self" {
                    full.push(name);
                }
                if full.len() == 1 && ROOTS.contains(&full[0].as_str()) {
                    self.flag(
                        "scan.alias",
                        r.ident.span(),
                        format!("renaming `{}` hides what its paths reach", full[0]),
                    );
                }
                self.check_segments(&full, r.ident.span());
            }
            syn::UseTree::Glob(g) => {
                if prefix.len() == 1 && ROOTS.contains(&prefix[0].as_str()) {
                    self.flag(
                        "scan.alias",
                        g.star_token.span,
                        format!("a glob import of `{}` hides what its paths reach", prefix[0]),
                    );
                }
                self.check_segments(prefix, g.star_token.span);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.check_use(t, prefix);
                }
            }
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Tokens as strings with spans, groups opened; `::` joined into one token.
fn flatten(tokens: TokenStream) -> Vec<(String, Span)> {
    let mut out: Vec<(String, Span)> = Vec::new();
    for tt in tokens {
        match tt {
            TokenTree::Group(g) => out.extend(flatten(g.stream())),
            TokenTree::Ident(i) => out.push((i.to_string().trim_start_matches("r#").to_string(), i.span())),
            TokenTree::Punct(p) => {
                let c = p.as_char().to_string();
                if c == ":" && out.last().is_some_and(|(t, _)| t == ":") {
                    out.last_mut().expect("checked").0 = "::".into();
                } else {
                    out.push((c, p.span()));
                }
            }
            TokenTree::Literal(l) => out.push((l.to_string(), l.span())),
        }
    }
    out
}

fn abi_span(abi: &Option<syn::Abi>) -> Option<Span> {
    abi.as_ref().map(|a| a.extern_token.span)
}

impl<'ast> Visit<'ast> for Scanner<'_> {
    fn visit_expr_unsafe(&mut self, e: &'ast syn::ExprUnsafe) {
        self.flag("scan.unsafe", e.unsafe_token.span, "`unsafe` block");
        visit::visit_expr_unsafe(self, e);
    }

    fn visit_signature(&mut self, s: &'ast syn::Signature) {
        if let Some(u) = &s.unsafety {
            self.flag("scan.unsafe", u.span, format!("`unsafe fn {}`", s.ident));
        }
        if let Some(span) = abi_span(&s.abi) {
            self.flag("scan.ffi", span, format!("`extern fn {}`", s.ident));
        }
        visit::visit_signature(self, s);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if let Some(u) = &i.unsafety {
            self.flag("scan.unsafe", u.span, "`unsafe impl`");
        }
        visit::visit_item_impl(self, i);
    }

    fn visit_item_trait(&mut self, i: &'ast syn::ItemTrait) {
        if let Some(u) = &i.unsafety {
            self.flag("scan.unsafe", u.span, "`unsafe trait`");
        }
        visit::visit_item_trait(self, i);
    }

    fn visit_item_foreign_mod(&mut self, i: &'ast syn::ItemForeignMod) {
        self.flag("scan.ffi", i.abi.extern_token.span, "`extern` block");
        visit::visit_item_foreign_mod(self, i);
    }

    fn visit_item_extern_crate(&mut self, i: &'ast syn::ItemExternCrate) {
        self.flag("scan.ffi", i.extern_token.span, format!("`extern crate {}`", i.ident));
        visit::visit_item_extern_crate(self, i);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if let Some(u) = &m.unsafety {
            self.flag("scan.unsafe", u.span, "`unsafe mod`");
        }
        visit::visit_item_mod(self, m);
    }

    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        let name = a.path().segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        if ATTRIBUTES.contains(&name.as_str()) {
            self.flag("scan.attribute", a.pound_token.span, format!("`#[{name}]` is not allowed in recipe code"));
        }
        // cfg_attr and friends: whatever they may expand to.
        if let syn::Meta::List(list) = &a.meta {
            let flat = flatten(list.tokens.clone());
            if let Some((t, _)) = flat.iter().find(|(t, _)| ATTRIBUTES.contains(&t.as_str())) {
                self.flag("scan.attribute", a.pound_token.span, format!("`{t}` inside `#[{name}(…)]`"));
            }
        }
        visit::visit_attribute(self, a);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let name = m.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        let span = m.path.segments.last().map(|s| s.ident.span()).unwrap_or_else(Span::call_site);
        if MACROS.contains(&name.as_str()) {
            self.flag("scan.macro", span, format!("`{name}!` is not allowed in recipe code"));
        }
        self.check_tokens(m.tokens.clone());
        visit::visit_macro(self, m);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let span = p.segments.first().map(|s| s.ident.span()).unwrap_or_else(Span::call_site);
        self.check_segments(&segs, span);
        visit::visit_path(self, p);
    }

    fn visit_expr_method_call(&mut self, e: &'ast syn::ExprMethodCall) {
        let name = e.method.to_string();
        if TCH_IO.contains(&name.as_str()) {
            self.flag("scan.io", e.method.span(), format!("`.{name}(…)` reads or writes files"));
        }
        visit::visit_expr_method_call(self, e);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.check_use(&u.tree, &mut Vec::new());
        visit::visit_item_use(self, u);
    }
}

#[cfg(test)]
mod tch_api;

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(src: &str) -> Vec<String> {
        scan_file("recipe/src/model.rs", src).iter().map(|f| f.code.to_string()).collect()
    }

    fn rejected(src: &str, code: &str) {
        let found = scan_file("recipe/src/model.rs", src);
        assert!(found.iter().any(|f| f.code == code && f.line.is_some()), "expected {code} in {found:#?}\nfor:\n{src}");
    }

    #[test]
    fn the_canonical_recipe_is_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipe/src");
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            let found = scan_file(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap());
            assert!(found.is_empty(), "{found:#?}");
        }
    }

    #[test]
    fn reading_a_file_directly_through_aliases_and_through_macros() {
        rejected("fn f() { let _ = std::fs::read(\"/data/hidden-00000.bin\"); }", "scan.io");
        rejected("fn f() { let _ = ::std::fs::read_to_string(\"x\"); }", "scan.io");
        rejected("use std::fs; fn f() { fs::read(\"x\"); }", "scan.io");
        rejected("use std::{io, fs::File}; fn f() {}", "scan.io");
        rejected("use std as s; fn f() { s::fs::read(\"x\"); }", "scan.alias");
        rejected("use std::*; fn f() { fs::read(\"x\"); }", "scan.alias");
        rejected("use core::{self as c}; fn f() {}", "scan.alias");
        rejected("extern crate std as s; fn f() {}", "scan.ffi");
        rejected("macro_rules! r { () => { std::fs::read(\"x\") } } fn f() { r!(); }", "scan.io");
        rejected("fn f() { let v = vec![std::fs::read(\"x\")]; }", "scan.io");
        rejected("fn f(vs: &tch::nn::VarStore) { vs.save(\"/tmp/w\").unwrap(); }", "scan.io");
        rejected("fn f() { let _ = tch::Tensor::read_npy(\"x\"); }", "scan.io");
        rejected("fn f() { let _ = tch::CModule::load(\"x\"); }", "scan.io");
    }

    #[test]
    fn tensors_read_from_files_and_datasets_loaded_from_folders() {
        // Tensor::from_file maps any file as a tensor: the hidden shard during the hidden eval.
        let opts = "(tch::Kind::Uint8, tch::Device::Cpu)";
        rejected(
            &format!("fn f() {{ tch::Tensor::from_file(\"/v/hidden-00000.bin\", false, None, {opts}); }}"),
            "scan.io",
        );
        rejected(&format!("fn f() {{ tch::Tensor::f_from_file(\"/etc/passwd\", false, None, {opts}); }}"), "scan.io");
        rejected("fn f(o: &tch::Tensor) { tch::Tensor::from_file_out(o, \"/v/h.bin\", false, None); }", "scan.io");
        rejected("fn f(o: &tch::Tensor) { tch::Tensor::f_from_file_out(o, \"/v/h.bin\", false, None); }", "scan.io");
        rejected("use tch::Tensor as T; fn f() { let r = T::from_file; }", "scan.io");
        rejected("use tch::*; fn f() { vision::mnist::load_dir(\"/validator/hidden\"); }", "scan.io");
        rejected("use tch::*; fn f() { vision::cifar::load_dir(\"/data\"); }", "scan.io");
        rejected("use tch::*; fn f() { vision::imagenet::load_from_dir(\"/data\"); }", "scan.io");
        rejected("use tch as t; fn f() { t::vision::image::load(\"/etc/passwd\"); }", "scan.io");
        rejected("fn f(vs: &tch::nn::VarStore) { vs.fill_safetensors(\"/run/step-4.safetensors\"); }", "scan.io");
        rejected("fn f() { tch::Tensor::loadz_multi(\"/run/step-4.npz\"); }", "scan.io");
        rejected("macro_rules! m { () => { tch::Tensor::from_file } } fn f() { let r = m!(); }", "scan.io");
        // The finding points at the line of the call.
        let f = scan_file("recipe/src/model.rs", "use tch::Tensor;\nfn f() {\n    Tensor::from_file(\"x\", false, None, (tch::Kind::Uint8, tch::Device::Cpu));\n}\n");
        assert!(f.iter().any(|f| f.code == "scan.io" && f.line == Some(3)), "{f:#?}");
    }

    #[test]
    fn sockets_processes_environment_and_threads() {
        rejected("fn f() { std::net::TcpStream::connect(\"1.2.3.4:80\"); }", "scan.io");
        rejected("use std::process::Command; fn f() { Command::new(\"sh\"); }", "scan.io");
        rejected("fn f() { let _ = std::env::var(\"HOME\"); }", "scan.io");
        rejected("fn f() { std::thread::spawn(|| ()); }", "scan.io");
        rejected("fn f() { let k = env!(\"HOME\"); }", "scan.macro");
        rejected("fn f() { let k = option_env!(\"SECRET\"); }", "scan.macro");
    }

    #[test]
    fn unsafe_ffi_and_compile_time_inclusion() {
        rejected("fn f() { unsafe { core::hint::unreachable_unchecked() } }", "scan.unsafe");
        rejected("unsafe fn f() {}", "scan.unsafe");
        rejected("struct S; unsafe impl Send for S {}", "scan.unsafe");
        rejected("extern \"C\" { fn open(p: *const u8) -> i32; }", "scan.ffi");
        rejected("extern \"C\" fn f() {}", "scan.ffi");
        rejected("fn f() { libc::getpid(); }", "scan.ffi");
        rejected("#[no_mangle] pub fn f() {}", "scan.attribute");
        rejected("#[unsafe(export_name = \"x\")] pub fn f() {}", "scan.attribute");
        rejected("#[link(name = \"c\")] extern {}", "scan.attribute");
        rejected("fn f() { std::arch::asm!(\"nop\"); }", "scan.macro");
        rejected("static H: &[u8] = include_bytes!(\"/validator/hidden/hidden-00000.bin\");", "scan.macro");
        rejected("const S: &str = include_str!(\"../../trainer/src/eval.rs\");", "scan.macro");
        rejected("#[path = \"../../trainer/src/eval.rs\"] mod eval;", "scan.attribute");
        rejected("#[cfg_attr(all(), path = \"/etc/x.rs\")] mod m;", "scan.attribute");
        rejected("macro_rules! m { () => { unsafe { 1 } } }", "scan.unsafe");
        rejected("macro_rules! m { ($p:expr) => { include_bytes!($p) } }", "scan.macro");
    }

    #[test]
    fn honest_code_passes_and_garbage_is_a_finding() {
        let honest = "use tch::{nn, Kind, Tensor};\nuse std::collections::HashMap;\n\
            fn relu2(x: &Tensor) -> Tensor { x.relu().square() }\n\
            fn lr(p: f64) -> f64 { 0.5 * (1.0 + (std::f64::consts::PI * p).cos()) }\n\
            fn load_state(m: &HashMap<String, Tensor>) -> usize { m.len() }\n";
        assert_eq!(codes(honest), Vec::<&str>::new());
        assert_eq!(codes("fn f( {"), vec!["scan.parse"]);
    }

    #[test]
    fn findings_carry_their_lines() {
        let src = "fn ok() {}\n\nfn bad() {\n    let _ = std::fs::read(\"x\");\n}\n";
        let f = scan_file("recipe/src/lib.rs", src);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].path.as_deref(), f[0].line), (Some("recipe/src/lib.rs"), Some(4)));
    }
}
