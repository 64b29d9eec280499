//! String operations over plain ASCII text.

use super::task::{Ctx, STR_PARAMS, Task, case1, indent, py_str};

/// Letters a template may single out; partitioned like every pick pool.
const LETTERS: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'k', 'l', 'm', 'n', 'o', 'p', 'r', 's', 't', 'u',
    'w',
];

/// Sentences, one with doubled spaces, plus the empty string: the shared input mix.
fn texts(c: &mut Ctx, n: usize) -> Vec<String> {
    let mut out: Vec<String> = (0..n).map(|_| c.sentence(1, 4)).collect();
    out.push(format!("{}  {}", c.word(), c.word()));
    out.push(String::new());
    out
}

pub(crate) fn count_char(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "count_char",
        "occurrences",
        "tally_letter",
        "count_letter",
        "letter_frequency",
        "char_count",
        "how_many_times",
        "count_occurrences",
    ]);
    let s = c.pick(STR_PARAMS);
    let ch = c.pick(LETTERS);
    let doc = match c.below(3) {
        0 => format!("Return how many times the letter '{ch}' occurs in {s} (case-sensitive)."),
        1 => format!("Count the occurrences of the character '{ch}' in the string {s}."),
        _ => format!(
            "Return the number of '{ch}' characters in {s}; uppercase letters do not count."
        ),
    };
    let mut inputs = texts(c, 4);
    inputs.push(format!("{ch}{ch}{ch}"));
    inputs.push(ch.to_ascii_uppercase().to_string());
    Task {
        name,
        params: vec![(s, "str")],
        ret: "int",
        doc,
        body: format!("    return {s}.count('{ch}')\n"),
        cases: inputs
            .into_iter()
            .map(|t| (t.matches(ch).count(), t))
            .map(|(n, t)| case1(t, n))
            .collect(),
    }
}

pub(crate) fn count_vowels(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "count_vowels",
        "vowel_count",
        "num_vowels",
        "tally_vowels",
        "vowels_in",
        "count_aeiou",
        "vowel_total",
        "how_many_vowels",
    ]);
    let s = c.pick(STR_PARAMS);
    let doc = match c.below(3) {
        0 => format!("Return the number of vowels (a, e, i, o, u, in either case) in {s}."),
        1 => format!(
            "Count how many characters of {s} are vowels, ignoring case. 'y' is not a vowel."
        ),
        _ => {
            format!("Given a string {s}, return how many of its letters are one of aeiou or AEIOU.")
        }
    };
    let mut inputs = texts(c, 4);
    inputs.extend(["AEIOU".to_string(), "rhythm".to_string()]);
    let vowels = |t: &str| {
        t.chars()
            .filter(|ch| "aeiou".contains(ch.to_ascii_lowercase()))
            .count()
    };
    Task {
        name,
        params: vec![(s, "str")],
        ret: "int",
        doc,
        body: indent(&format!(
            "
count = 0
for ch in {s}.lower():
    if ch in 'aeiou':
        count += 1
return count
"
        )),
        cases: inputs
            .into_iter()
            .map(|t| case1(t.as_str(), vowels(&t)))
            .collect(),
    }
}

pub(crate) fn reverse_words(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "reverse_words",
        "flip_word_order",
        "words_backwards",
        "reverse_sentence",
        "invert_words",
        "backward_words",
        "mirror_words",
        "reorder_words",
    ]);
    let s = c.pick(STR_PARAMS);
    let doc = match c.below(3) {
        0 => format!("Return {s} with its words in reverse order, separated by single spaces."),
        1 => format!(
            "Reverse the order of the whitespace-separated words in {s}; join them with one space."
        ),
        _ => format!("Split {s} into words and return them back to front as one string."),
    };
    let mut inputs = texts(c, 4);
    inputs.push(format!(" {} ", c.word()));
    let rev = |t: &str| t.split_whitespace().rev().collect::<Vec<_>>().join(" ");
    Task {
        name,
        params: vec![(s, "str")],
        ret: "str",
        doc,
        body: format!("    return ' '.join(reversed({s}.split()))\n"),
        cases: inputs
            .into_iter()
            .map(|t| case1(t.as_str(), rev(&t)))
            .collect(),
    }
}

pub(crate) fn wrap_text(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "wrap_text",
        "surround",
        "enclose",
        "bracket",
        "decorate",
        "frame_text",
        "box_in",
        "add_delimiters",
    ]);
    let s = c.pick(STR_PARAMS);
    let (open, close) = c.pick(&[
        ("<", ">"),
        ("[", "]"),
        ("(", ")"),
        ("{", "}"),
        ("*", "*"),
        ("**", "**"),
        ("_", "_"),
        ("#", "#"),
        ("<<", ">>"),
        ("|", "|"),
        ("~", "~"),
        ("[[", "]]"),
    ]);
    let doc = match c.below(3) {
        0 => format!("Return {s} with '{open}' added in front and '{close}' added at the end."),
        1 => format!("Surround the string {s} with the markers '{open}' and '{close}'."),
        _ => format!("Enclose {s} between '{open}' on the left and '{close}' on the right."),
    };
    let inputs = texts(c, 5);
    Task {
        name,
        params: vec![(s, "str")],
        ret: "str",
        doc,
        body: format!("    return {} + {s} + {}\n", py_str(open), py_str(close)),
        cases: inputs
            .into_iter()
            .map(|t| case1(t.as_str(), format!("{open}{t}{close}")))
            .collect(),
    }
}

pub(crate) fn stretch_chars(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "stretch_chars",
        "repeat_letters",
        "stutter",
        "echo_chars",
        "inflate",
        "multiply_letters",
        "elongate",
        "repeat_each",
    ]);
    let s = c.pick(STR_PARAMS);
    let k = c.konst(2, 5);
    let doc = match c.below(2) {
        0 => format!("Return {s} with every character repeated {k} times in place."),
        _ => {
            format!("Build a new string in which each character of {s} appears {k} times in a row.")
        }
    };
    let mut inputs: Vec<String> = (0..4).map(|_| c.word().to_string()).collect();
    inputs.extend(["a b".to_string(), "x".to_string(), String::new()]);
    let stretch = |t: &str| {
        t.chars()
            .flat_map(|ch| std::iter::repeat_n(ch, k as usize))
            .collect::<String>()
    };
    Task {
        name,
        params: vec![(s, "str")],
        ret: "str",
        doc,
        body: format!("    return ''.join(ch * {k} for ch in {s})\n"),
        cases: inputs
            .into_iter()
            .map(|t| case1(t.as_str(), stretch(&t)))
            .collect(),
    }
}

pub(crate) fn replace_char(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "replace_char",
        "substitute",
        "swap_letter",
        "mask_letter",
        "censor_letter",
        "replace_letter",
        "redact",
        "translate_char",
    ]);
    let s = c.pick(STR_PARAMS);
    let from = c.pick(LETTERS);
    let to = c.pick(&['-', '_', '*', '#', '+', '@', '.', '!']);
    let doc = match c.below(3) {
        0 => format!("Return {s} with every '{from}' replaced by '{to}'."),
        1 => {
            format!("Replace each occurrence of the letter '{from}' in {s} with the symbol '{to}'.")
        }
        _ => format!(
            "Mask the character '{from}' in {s}: each one becomes '{to}', other characters stay."
        ),
    };
    let mut inputs = texts(c, 4);
    inputs.push(format!("{from}{from}"));
    inputs.push(from.to_ascii_uppercase().to_string());
    Task {
        name,
        params: vec![(s, "str")],
        ret: "str",
        doc,
        body: format!("    return {s}.replace('{from}', '{to}')\n"),
        cases: inputs
            .into_iter()
            .map(|t| case1(t.as_str(), t.replace(from, &to.to_string())))
            .collect(),
    }
}

pub(crate) fn strip_chars(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "strip_chars",
        "remove_letters",
        "drop_chars",
        "delete_chars",
        "filter_out_chars",
        "erase_letters",
        "without_chars",
        "purge_chars",
    ]);
    let s = c.pick(STR_PARAMS);
    let set = c.pick(&[
        "aeiou", "xyz", "st", "rln", "aei", "ou", "mn", "bcd", "er", "nt", "ae", "lo",
    ]);
    let doc = match c.below(2) {
        0 => format!("Return {s} with every character that appears in '{set}' removed."),
        _ => format!(
            "Delete all occurrences of the letters in '{set}' from {s} and return what is left."
        ),
    };
    let mut inputs = texts(c, 4);
    inputs.push(set.to_string());
    let strip = |t: &str| {
        t.chars()
            .filter(|ch| !set.contains(*ch))
            .collect::<String>()
    };
    Task {
        name,
        params: vec![(s, "str")],
        ret: "str",
        doc,
        body: format!("    return ''.join(ch for ch in {s} if ch not in '{set}')\n"),
        cases: inputs
            .into_iter()
            .map(|t| case1(t.as_str(), strip(&t)))
            .collect(),
    }
}

pub(crate) fn is_palindrome(c: &mut Ctx) -> Task {
    let name = c.pick(&[
        "is_palindrome",
        "reads_same_backwards",
        "palindromic",
        "mirror_equal",
        "is_symmetric_text",
        "same_reversed",
        "check_palindrome",
        "is_mirror",
    ]);
    let s = c.pick(STR_PARAMS);
    let doc = match c.below(2) {
        0 => format!(
            "Return True if {s} reads the same forwards and backwards, ignoring spaces and case."
        ),
        _ => format!(
            "Check whether {s} is a palindrome once spaces are removed and letters are lowercased."
        ),
    };
    const PALINDROMES: &[&str] = &[
        "radar",
        "Level",
        "noon",
        "Never odd or even",
        "step on no pets",
        "kayak",
        "Refer",
        "a santa at nasa",
    ];
    let mut inputs: Vec<String> = (0..3)
        .map(|_| PALINDROMES[c.below(PALINDROMES.len())].to_string())
        .collect();
    inputs.extend((0..3).map(|_| c.sentence(1, 3)));
    inputs.extend(["ab".to_string(), "x".to_string(), String::new()]);
    let pal = |t: &str| {
        let cleaned: Vec<char> = t
            .chars()
            .filter(|ch| *ch != ' ')
            .map(|ch| ch.to_ascii_lowercase())
            .collect();
        cleaned.iter().eq(cleaned.iter().rev())
    };
    Task {
        name,
        params: vec![(s, "str")],
        ret: "bool",
        doc,
        body: indent(&format!(
            "
cleaned = ''.join(ch.lower() for ch in {s} if ch != ' ')
return cleaned == cleaned[::-1]
"
        )),
        cases: inputs
            .into_iter()
            .map(|t| case1(t.as_str(), pal(&t)))
            .collect(),
    }
}
