//! Every recipe shipped in recipes/ parses into a `Recipe` (unknown keys and wrong types are
//! errors) and passes `validate`: a recipe the README or a doc points to must not fail on its
//! first key.

use anvil_train::Recipe;

#[test]
fn shipped_recipes_parse_and_validate() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"),
    )
    .join("../recipes");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let recipe: Recipe =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        recipe
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 7, "only {seen} recipes in {}", dir.display());
}
