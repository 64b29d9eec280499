//! Bandit's blacklists (`blacklists/calls.py`, `blacklists/imports.py`): calls by qualified
//! name (B301–B323) and imports by module prefix (B401–B415). Bandit runs them as one test, so
//! a node yields at most one of them: the first entry, in table order, that matches.

use super::python::{Issue, Walk, issue};
use super::python_ast::NodeExt;
use super::python_ast::{Value, arg_value, str_constant};
use super::python_calls::Call;
use crate::finding::Level;
use crate::imports::Import;
use std::collections::HashMap;
use std::sync::LazyLock;

struct Entry {
    id: &'static str,
    qualnames: &'static [&'static str],
    /// `{name}` is replaced by the matched name.
    message: &'static str,
    level: Level,
}

const XML_CALL: &str = "Using {name} to parse untrusted XML data is known to be vulnerable to XML \
                        attacks. Replace {name} with its defusedxml equivalent function or make \
                        sure defusedxml.defuse_stdlib() is called";
const XML_IMPORT: &str = "Using {name} to parse untrusted XML data is known to be vulnerable to \
                          XML attacks. Replace {name} with the equivalent defusedxml package, or \
                          make sure defusedxml.defuse_stdlib() is called.";
const CONSIDER: &str = "Consider possible security implications associated with {name} module.";

const M: Level = Level::Medium;

static CALLS: &[Entry] = &[
    Entry {
        id: "B301",
        qualnames: &[
            "pickle.loads",
            "pickle.load",
            "pickle.Unpickler",
            "dill.loads",
            "dill.load",
            "dill.Unpickler",
            "shelve.open",
            "shelve.DbfilenameShelf",
            "jsonpickle.decode",
            "jsonpickle.unpickler.decode",
            "jsonpickle.unpickler.Unpickler",
            "pandas.read_pickle",
        ],
        message: "Pickle and modules that wrap it can be unsafe when used to deserialize \
                  untrusted data, possible security issue.",
        level: M,
    },
    Entry {
        id: "B302",
        qualnames: &["marshal.load", "marshal.loads"],
        message: "Deserialization with the marshal module is possibly dangerous.",
        level: M,
    },
    Entry {
        id: "B303",
        qualnames: &[
            "Crypto.Hash.MD2.new",
            "Crypto.Hash.MD4.new",
            "Crypto.Hash.MD5.new",
            "Crypto.Hash.SHA.new",
            "Cryptodome.Hash.MD2.new",
            "Cryptodome.Hash.MD4.new",
            "Cryptodome.Hash.MD5.new",
            "Cryptodome.Hash.SHA.new",
            "cryptography.hazmat.primitives.hashes.MD5",
            "cryptography.hazmat.primitives.hashes.SHA1",
        ],
        message: "Use of insecure MD2, MD4, MD5, or SHA1 hash function.",
        level: M,
    },
    Entry {
        id: "B304",
        qualnames: &[
            "Crypto.Cipher.ARC2.new",
            "Crypto.Cipher.ARC4.new",
            "Crypto.Cipher.Blowfish.new",
            "Crypto.Cipher.DES.new",
            "Crypto.Cipher.XOR.new",
            "Cryptodome.Cipher.ARC2.new",
            "Cryptodome.Cipher.ARC4.new",
            "Cryptodome.Cipher.Blowfish.new",
            "Cryptodome.Cipher.DES.new",
            "Cryptodome.Cipher.XOR.new",
            "cryptography.hazmat.primitives.ciphers.algorithms.ARC4",
            "cryptography.hazmat.primitives.ciphers.algorithms.Blowfish",
            "cryptography.hazmat.primitives.ciphers.algorithms.CAST5",
            "cryptography.hazmat.primitives.ciphers.algorithms.IDEA",
            "cryptography.hazmat.primitives.ciphers.algorithms.SEED",
            "cryptography.hazmat.primitives.ciphers.algorithms.TripleDES",
        ],
        message: "Use of insecure cipher {name}. Replace with a known secure cipher such as AES.",
        level: Level::High,
    },
    Entry {
        id: "B305",
        qualnames: &["cryptography.hazmat.primitives.ciphers.modes.ECB"],
        message: "Use of insecure cipher mode {name}.",
        level: M,
    },
    Entry {
        id: "B306",
        qualnames: &["tempfile.mktemp"],
        message: "Use of insecure and deprecated function (mktemp).",
        level: M,
    },
    Entry {
        id: "B307",
        qualnames: &["eval"],
        message: "Use of possibly insecure function - consider using safer ast.literal_eval.",
        level: M,
    },
    Entry {
        id: "B308",
        qualnames: &["django.utils.safestring.mark_safe"],
        message: "Use of mark_safe() may expose cross-site scripting vulnerabilities and should \
                  be reviewed.",
        level: M,
    },
    Entry {
        id: "B310",
        qualnames: &[
            "urllib.request.urlopen",
            "urllib.request.urlretrieve",
            "urllib.request.URLopener",
            "urllib.request.FancyURLopener",
            "six.moves.urllib.request.urlopen",
            "six.moves.urllib.request.urlretrieve",
            "six.moves.urllib.request.URLopener",
            "six.moves.urllib.request.FancyURLopener",
        ],
        message: "Audit url open for permitted schemes. Allowing use of file:/ or custom schemes \
                  is often unexpected.",
        level: M,
    },
    Entry {
        id: "B311",
        qualnames: &[
            "random.Random",
            "random.random",
            "random.randrange",
            "random.randint",
            "random.choice",
            "random.choices",
            "random.uniform",
            "random.triangular",
            "random.randbytes",
            "random.sample",
            "random.getrandbits",
        ],
        message: "Standard pseudo-random generators are not suitable for security/cryptographic \
                  purposes.",
        level: Level::Low,
    },
    Entry {
        id: "B312",
        qualnames: &["telnetlib.Telnet"],
        message: "Telnet-related functions are being called. Telnet is considered insecure. Use \
                  SSH or some other encrypted protocol.",
        level: Level::High,
    },
    Entry {
        id: "B313",
        qualnames: &[
            "xml.etree.cElementTree.parse",
            "xml.etree.cElementTree.iterparse",
            "xml.etree.cElementTree.fromstring",
            "xml.etree.cElementTree.XMLParser",
        ],
        message: XML_CALL,
        level: M,
    },
    Entry {
        id: "B314",
        qualnames: &[
            "xml.etree.ElementTree.parse",
            "xml.etree.ElementTree.iterparse",
            "xml.etree.ElementTree.fromstring",
            "xml.etree.ElementTree.XMLParser",
        ],
        message: XML_CALL,
        level: M,
    },
    Entry {
        id: "B315",
        qualnames: &["xml.sax.expatreader.create_parser"],
        message: XML_CALL,
        level: M,
    },
    Entry {
        id: "B316",
        qualnames: &[
            "xml.dom.expatbuilder.parse",
            "xml.dom.expatbuilder.parseString",
        ],
        message: XML_CALL,
        level: M,
    },
    Entry {
        id: "B317",
        qualnames: &[
            "xml.sax.parse",
            "xml.sax.parseString",
            "xml.sax.make_parser",
        ],
        message: XML_CALL,
        level: M,
    },
    Entry {
        id: "B318",
        qualnames: &["xml.dom.minidom.parse", "xml.dom.minidom.parseString"],
        message: XML_CALL,
        level: M,
    },
    Entry {
        id: "B319",
        qualnames: &["xml.dom.pulldom.parse", "xml.dom.pulldom.parseString"],
        message: XML_CALL,
        level: M,
    },
    Entry {
        id: "B321",
        qualnames: &["ftplib.FTP"],
        message: "FTP-related functions are being called. FTP is considered insecure. Use \
                  SSH/SFTP/SCP or some other encrypted protocol.",
        level: Level::High,
    },
    Entry {
        id: "B323",
        qualnames: &["ssl._create_unverified_context"],
        message: "By default, Python will create a secure, verified ssl context for use in such \
                  classes as HTTPSConnection. However, it still allows using an insecure context \
                  via the _create_unverified_context that  reverts to the previous behavior that \
                  does not validate certificates or perform hostname checks.",
        level: M,
    },
];

static IMPORTS: &[Entry] = &[
    Entry {
        id: "B401",
        qualnames: &["telnetlib"],
        message: "A telnet-related module is being imported.  Telnet is considered insecure. Use \
                  SSH or some other encrypted protocol.",
        level: Level::High,
    },
    Entry {
        id: "B402",
        qualnames: &["ftplib"],
        message: "A FTP-related module is being imported.  FTP is considered insecure. Use \
                  SSH/SFTP/SCP or some other encrypted protocol.",
        level: Level::High,
    },
    Entry {
        id: "B403",
        qualnames: &["pickle", "cPickle", "dill", "shelve"],
        message: CONSIDER,
        level: Level::Low,
    },
    Entry {
        id: "B404",
        qualnames: &["subprocess"],
        message: "Consider possible security implications associated with the subprocess module.",
        level: Level::Low,
    },
    Entry {
        id: "B405",
        qualnames: &["xml.etree.cElementTree", "xml.etree.ElementTree"],
        message: XML_IMPORT,
        level: Level::Low,
    },
    Entry {
        id: "B406",
        qualnames: &["xml.sax"],
        message: XML_IMPORT,
        level: Level::Low,
    },
    Entry {
        id: "B407",
        qualnames: &["xml.dom.expatbuilder"],
        message: XML_IMPORT,
        level: Level::Low,
    },
    Entry {
        id: "B408",
        qualnames: &["xml.dom.minidom"],
        message: XML_IMPORT,
        level: Level::Low,
    },
    Entry {
        id: "B409",
        qualnames: &["xml.dom.pulldom"],
        message: XML_IMPORT,
        level: Level::Low,
    },
    Entry {
        id: "B411",
        qualnames: &["xmlrpc"],
        message: "Using {name} to parse untrusted XML data is known to be vulnerable to XML \
                  attacks. Use defusedxml.xmlrpc.monkey_patch() function to monkey-patch \
                  xmlrpclib and mitigate XML vulnerabilities.",
        level: Level::High,
    },
    Entry {
        id: "B412",
        qualnames: &[
            "wsgiref.handlers.CGIHandler",
            "twisted.web.twcgi.CGIScript",
            "twisted.web.twcgi.CGIDirectory",
        ],
        message: CONSIDER,
        level: Level::High,
    },
    Entry {
        id: "B413",
        qualnames: &[
            "Crypto.Cipher",
            "Crypto.Hash",
            "Crypto.IO",
            "Crypto.Protocol",
            "Crypto.PublicKey",
            "Crypto.Random",
            "Crypto.Signature",
            "Crypto.Util",
        ],
        message: "The pyCrypto library and its module {name} are no longer actively maintained \
                  and have been deprecated. Consider using pyca/cryptography library.",
        level: Level::High,
    },
    Entry {
        id: "B415",
        qualnames: &["pyghmi"],
        message: "An IPMI-related module is being imported. IPMI is considered insecure. Use an \
                  encrypted protocol.",
        level: Level::High,
    },
];

/// Every call and import qualified name to its entry (the first entry listing it, as Bandit
/// checks them in order): one lookup per call instead of a scan of 130 names.
static BY_NAME: LazyLock<HashMap<&'static str, &'static Entry>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for e in CALLS.iter().chain(IMPORTS) {
        for q in e.qualnames {
            map.entry(*q).or_insert(e);
        }
    }
    map
});

fn report(e: &Entry, name: &str) -> (&'static str, Issue) {
    (
        e.id,
        issue(e.level, Level::High, e.message.replace("{name}", name)),
    )
}

/// The call blacklist, with the import blacklist applied to `__import__("m")` and
/// `importlib.import_module("m")`.
pub(super) fn call(w: &Walk, call: &Call) -> Option<(&'static str, Issue)> {
    let is_import =
        call.func.kind_name() == "identifier" && w.src.text_of(call.func) == "__import__";
    let imported = if is_import {
        match call.args.first() {
            Some(&a) => Value::Str(str_constant(w.src, a).unwrap_or_else(|| "UNKNOWN".into())),
            None => Value::Str(String::new()),
        }
    } else if matches!(
        call.qual.as_str(),
        "importlib.import_module" | "importlib.__import__"
    ) {
        match call.args.first() {
            Some(&a) => arg_value(w.src, a),
            // Bandit indexes `call_keywords["name"]`: without it the test raises.
            None => arg_value(w.src, call.kw("name")?),
        }
    } else {
        return BY_NAME
            .get(call.qual.as_str())
            .map(|e| report(e, &call.qual));
    };
    let Value::Str(name) = imported else {
        return None;
    };
    BY_NAME.get(name.as_str()).map(|e| report(e, &name))
}

/// The import blacklist for one import statement: each entry in turn, against every imported
/// name (`module.name` for `from` imports, whose dots `ast` drops), by prefix.
pub(super) fn import(entries: &[Import]) -> Option<(&'static str, Issue)> {
    let names: Vec<(String, &str)> = entries
        .iter()
        .map(|e| match &e.name {
            None => (e.module.clone(), e.module.as_str()),
            Some(n) => {
                let module = e.module.trim_start_matches('.');
                let full = if module.is_empty() {
                    n.clone()
                } else {
                    format!("{module}.{n}")
                };
                (full, n.as_str())
            }
        })
        .collect();
    for e in IMPORTS {
        for (full, shown) in &names {
            if e.qualnames.iter().any(|q| full.starts_with(q)) {
                return Some(report(e, shown));
            }
        }
    }
    None
}
