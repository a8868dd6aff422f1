//! The diff scan's check of recipe/recipe.toml. Its keys belong to the recipe
//! (a miner may add one for a new technique), so the protocol fixes only the
//! shape: valid TOML; one table per protocol config of the king, no other
//! tables; scalar values (numbers finite and of sane magnitude, booleans,
//! short strings). Anything else would fail in the harness later, or hide data.

use super::Finding;

const PATH: &str = "recipe/recipe.toml";
/// Largest magnitude a number may have (a width, a step count, a rate).
const MAX_ABS: f64 = 1e9;
const MAX_STRING: usize = 256;

/// Findings for `text` given the king's protocol config names.
pub fn check(text: &str, configs: &[String]) -> Vec<Finding> {
    let line_of = |offset: usize| text[..offset.min(text.len())].lines().count().max(1);
    let doc = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| line_of(s.start));
            return vec![Finding::reject("recipe.toml", PATH, line, format!("not valid TOML: {}", e.message()))];
        }
    };
    // toml's Table keeps no spans; find each key's line by its header or assignment.
    let find_line = |needle: &str| text.lines().position(|l| l.trim_start().starts_with(needle)).map(|i| i + 1);
    let mut out = Vec::new();
    for (name, value) in &doc {
        let header = find_line(&format!("[{name}]")).or_else(|| find_line(&format!("[\"{name}\"]")));
        let Some(table) = value.as_table() else {
            out.push(Finding::reject("recipe.toml", PATH, find_line(name), format!("{name:?} is not a config table")));
            continue;
        };
        if !configs.iter().any(|c| c == name) {
            out.push(Finding::reject("recipe.toml", PATH, header, format!("[{name}] is not a protocol config")));
        }
        for (key, v) in table {
            let bad = match v {
                toml::Value::Float(f) if !f.is_finite() || f.abs() > MAX_ABS => Some("a number out of range"),
                toml::Value::Integer(i) if (*i as f64).abs() > MAX_ABS => Some("a number out of range"),
                toml::Value::String(s) if s.len() > MAX_STRING => Some("a string over 256 bytes"),
                toml::Value::Array(_) | toml::Value::Table(_) | toml::Value::Datetime(_) => Some("not a scalar"),
                _ => None,
            };
            if let Some(why) = bad {
                out.push(Finding::reject("recipe.toml", PATH, find_line(key), format!("[{name}] {key}: {why}")));
            }
        }
    }
    for c in configs {
        if !doc.contains_key(c) {
            out.push(Finding::reject("recipe.toml", PATH, None, format!("the table [{c}] is missing")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::check;

    fn configs() -> Vec<String> {
        ["micro", "tiny"].map(String::from).to_vec()
    }

    #[test]
    fn the_canonical_shape_passes_and_each_break_is_named_with_its_line() {
        let good = "[micro]\nlr = 3e-3\nn_layer = 2\ntie_embeddings = false\n\n[tiny]\nlr = 2e-3\nnorm = \"rms\"\n";
        assert_eq!(check(good, &configs()), vec![]);
        let canonical = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../recipe/recipe.toml")).unwrap();
        let all = ["micro", "tiny", "proxy", "karpa-1"].map(String::from).to_vec();
        assert_eq!(check(&canonical, &all), vec![]);

        let broken = check("[micro]\nlr = \n", &configs());
        assert_eq!((broken.len(), broken[0].line), (1, Some(2)), "{broken:?}");
        let cases = [
            ("[micro]\nlr = inf\n[tiny]\n", "lr: a number out of range", Some(2)),
            ("[micro]\nlr = 1e12\n[tiny]\n", "lr: a number out of range", Some(2)),
            ("[micro]\nlayers = [1, 2]\n[tiny]\n", "layers: not a scalar", Some(2)),
            ("[micro]\n[tiny]\n[hidden]\nx = 1\n", "[hidden] is not a protocol config", Some(3)),
            ("[micro]\n", "the table [tiny] is missing", None),
            ("stray = 1\n[micro]\n[tiny]\n", "\"stray\" is not a config table", Some(1)),
        ];
        for (text, message, line) in cases {
            let f = check(text, &configs());
            assert!(f.iter().any(|f| f.message.contains(message) && f.line == line), "{text:?}: {f:?}");
        }
    }
}
