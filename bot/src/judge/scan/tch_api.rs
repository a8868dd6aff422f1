//! The scan's tch denylist, derived from tch itself: every public function of the
//! locked tch that takes a filesystem path (a parameter generic over
//! `AsRef<Path>`, a `&Path`/`PathBuf`, or a string named like a path or file) must
//! be refused by the scan, so the next tch upgrade cannot open a hole silently.
//! The sources are the ones cargo unpacked for the workspace build (Cargo.lock's
//! version, under `$CARGO_HOME/registry/src`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// The locked tch's `src/` folder.
fn tch_sources() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).expect("the workspace's Cargo.lock");
    let lock: toml::Value = lock.parse().expect("Cargo.lock is TOML");
    let version = lock["package"]
        .as_array()
        .expect("Cargo.lock lists packages")
        .iter()
        .find(|p| p["name"].as_str() == Some("tch"))
        .and_then(|p| p["version"].as_str())
        .expect("tch is locked")
        .to_string();
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let registry = home.join("registry/src");
    std::fs::read_dir(&registry)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", registry.display()))
        .filter_map(|e| Some(e.ok()?.path().join(format!("tch-{version}/src"))))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("tch {version}'s sources are not under {} (run a build first)", registry.display()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
        if entry.is_dir() {
            rust_files(&entry, out);
        } else if entry.extension().is_some_and(|x| x == "rs") {
            out.push(entry);
        }
    }
}

fn tokens(t: &impl quote::ToTokens) -> String {
    t.to_token_stream().to_string().replace(' ', "")
}

/// Does this type (as tokens without spaces) name a filesystem path? A bare `Path`
/// counts only where the file imports `std::path::Path` (tch's `nn::Path` is a
/// variable-store prefix, not a file).
fn is_fs_path(ty: &str, std_path_in_scope: bool) -> bool {
    let bare = |name: &str| {
        ty.split(|c: char| !c.is_alphanumeric() && c != '_' && c != ':')
            .any(|seg| seg == name || seg == format!("std::path::{name}"))
    };
    ty.contains("std::path::Path") || (std_path_in_scope && (bare("Path") || bare("PathBuf")))
}

fn named_like_a_file(name: &str) -> bool {
    ["path", "file", "dir"].iter().any(|w| name.to_lowercase().contains(w))
}

/// A path-taking function and how recipe code would reach it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// `x.name(…)` on a value of the type.
    Method { ty: String, name: String },
    /// `Type::name(…)`.
    Associated { ty: String, name: String },
    /// `module::name(…)`, the module path under `tch::`.
    Free { module: String, name: String },
}

impl Reach {
    fn name(&self) -> &str {
        match self {
            Reach::Method { name, .. } | Reach::Associated { name, .. } | Reach::Free { name, .. } => name,
        }
    }

    /// Recipe code calling it, the way a hostile miner would hide it: through an
    /// alias or a glob import, so only a complete denylist catches it.
    fn hostile_call(&self) -> String {
        let target = "\"/validator/hidden/hidden-00000.bin\"";
        match self {
            Reach::Method { ty, name } => format!("fn f(x: &tch::{ty}) {{\n    let _ = x.{name}({target});\n}}\n"),
            Reach::Associated { ty, name } => {
                format!("use tch::{ty} as T;\nfn f() {{\n    let _ = T::{name}({target});\n}}\n")
            }
            Reach::Free { module, name } => {
                format!("use tch::*;\nfn f() {{\n    let _ = {module}::{name}({target});\n}}\n")
            }
        }
    }
}

struct Collector {
    std_path_in_scope: bool,
    /// The module path of the file under `tch::` (`vision::mnist`).
    module: String,
    /// The type of the `impl` block being visited, if any.
    self_ty: Option<String>,
    found: BTreeSet<Reach>,
}

impl Collector {
    fn check(&mut self, vis_public: bool, sig: &syn::Signature) {
        if !vis_public {
            return;
        }
        // Generic parameters bounded by AsRef<Path> (in <…> or in a where clause).
        let mut path_generics = BTreeSet::new();
        let mut str_generics = BTreeSet::new();
        for p in sig.generics.type_params() {
            let bounds = tokens(&p.bounds);
            if bounds.contains("AsRef<") && is_fs_path(&bounds, self.std_path_in_scope) {
                path_generics.insert(p.ident.to_string());
            } else if bounds.contains("AsRef<str>") || bounds.contains("ToString") {
                str_generics.insert(p.ident.to_string());
            }
        }
        if let Some(w) = &sig.generics.where_clause {
            for pred in &w.predicates {
                if let syn::WherePredicate::Type(t) = pred {
                    let bounds = tokens(&t.bounds);
                    if bounds.contains("AsRef<") && is_fs_path(&bounds, self.std_path_in_scope) {
                        path_generics.insert(tokens(&t.bounded_ty));
                    }
                }
            }
        }
        for input in &sig.inputs {
            let syn::FnArg::Typed(arg) = input else { continue };
            let name = tokens(&arg.pat);
            let ty = tokens(&arg.ty);
            let generic = |set: &BTreeSet<String>| set.iter().any(|g| ty == *g || ty == format!("&{g}"));
            let path_typed = is_fs_path(&ty, self.std_path_in_scope) || generic(&path_generics);
            let stringly = ty == "&str" || ty == "String" || ty.contains("AsRef<str>") || generic(&str_generics);
            if path_typed || (stringly && named_like_a_file(&name)) {
                let name = sig.ident.to_string();
                let receiver = sig.receiver().is_some();
                self.found.insert(match (&self.self_ty, receiver) {
                    (Some(ty), true) => Reach::Method { ty: ty.clone(), name },
                    (Some(ty), false) => Reach::Associated { ty: ty.clone(), name },
                    (None, _) => Reach::Free { module: self.module.clone(), name },
                });
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        // Trait impls add no new names: the trait's own declaration is checked.
        if i.trait_.is_some() {
            return;
        }
        let ty = match &*i.self_ty {
            syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
            _ => None,
        };
        let outer = std::mem::replace(&mut self.self_ty, ty);
        syn::visit::visit_item_impl(self, i);
        self.self_ty = outer;
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.check(matches!(f.vis, syn::Visibility::Public(_)), &f.sig);
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.check(matches!(f.vis, syn::Visibility::Public(_)), &f.sig);
        syn::visit::visit_impl_item_fn(self, f);
    }
    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        self.check(true, &f.sig);
        syn::visit::visit_trait_item_fn(self, f);
    }
}

/// Every public tch function that takes a filesystem path.
fn path_taking_functions() -> BTreeSet<Reach> {
    let src = tch_sources();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let ast = syn::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let std_path_in_scope = ast.items.iter().any(|i| match i {
            syn::Item::Use(u) => {
                let t = tokens(&u.tree);
                t.starts_with("std::path::") && (t.contains("::Path") || t.contains("{Path") || t.contains(",Path"))
            }
            _ => false,
        });
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let module = rel
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .filter(|c| c != "mod" && c != "lib")
            .collect::<Vec<_>>()
            .join("::");
        let mut c = Collector { std_path_in_scope, module, self_ty: None, found: BTreeSet::new() };
        c.visit_file(&ast);
        found.extend(c.found);
    }
    found
}

#[test]
fn every_path_taking_tch_function_is_refused() {
    let found = path_taking_functions();
    let names: BTreeSet<&str> = found.iter().map(Reach::name).collect();
    // The collector itself works: the ones known by hand are among those it finds.
    for known in
        ["from_file", "f_from_file", "from_file_out", "f_from_file_out", "save", "load", "load_dir", "read_npy"]
    {
        assert!(names.contains(known), "the collector missed {known}; found {found:#?}");
    }
    let passed: Vec<String> = found
        .iter()
        .map(Reach::hostile_call)
        .filter(|call| {
            let findings = super::scan_file("recipe/src/model.rs", call);
            !findings.iter().any(|f| f.code == "scan.io" && f.line.is_some())
        })
        .collect();
    assert!(passed.is_empty(), "tch functions that take a path pass the scan:\n{}", passed.join("\n"));
}
