//! How much of HumanEval converts to out-of-process checks, and that the synthetic tasks all do.

use anvil_eval::convert::convert;

#[test]
fn humaneval_and_synth_coverage() {
    let he = anvil_data::problems::humaneval();
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    let ok = he
        .iter()
        .filter(|p| match convert(&format!("{}\n{}", p.prompt, p.test)) {
            Ok(_) => true,
            Err(e) => {
                *reasons
                    .entry(e.split(':').next().unwrap().to_string())
                    .or_default() += 1;
                false
            }
        })
        .count();
    eprintln!("HumanEval: {ok}/164 convert; the rest: {reasons:?}");
    assert!(ok >= 120, "only {ok} of 164 HumanEval problems convert");
    let synth = anvil_data::synth::generate(&anvil_data::synth::SynthConfig {
        n_train: 200,
        n_heldout: 50,
        seed: 1,
    });
    for p in synth.train.iter().chain(&synth.heldout) {
        let cases = convert(&p.test).unwrap_or_else(|e| panic!("{}: {e}", p.task_id));
        assert!(cases.len() >= 5, "{}", p.task_id);
    }
}
