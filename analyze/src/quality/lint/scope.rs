//! pyflakes' model of names: bindings (what a name is bound to, and whether it was used) in
//! scopes (module, class, function, comprehension), with its class hierarchy flattened into
//! [`Kind`] and its `redefines` rules.

use crate::quality::flat::Nd;
use std::borrow::Cow;
use std::collections::HashMap;

pub(super) type ScopeId = usize;
pub(super) type BindingId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScopeKind {
    Module,
    Class,
    Function,
    /// Comprehensions and generator expressions (pyflakes' `GeneratorScope`).
    Generator,
}

/// Names pyflakes' `FunctionScope` treats as always used (its initial `globals`).
pub(super) const ALWAYS_USED: [&str; 4] = [
    "__tracebackhide__",
    "__traceback_info__",
    "__traceback_supplement__",
    "__debuggerskip__",
];

pub(super) struct Scope<'t> {
    pub kind: ScopeKind,
    pub names: HashMap<Cow<'t, str>, BindingId>,
    /// `from m import *` was seen here.
    pub import_starred: bool,
    /// `locals()` is called here: no binding is reported unused.
    pub uses_locals: bool,
    /// Bit i set: `ALWAYS_USED[i]` was deleted from this function's `globals`.
    pub globals_removed: u8,
}

impl Scope<'_> {
    pub fn new(kind: ScopeKind) -> Self {
        Scope {
            kind,
            names: HashMap::new(),
            import_starred: false,
            uses_locals: false,
            globals_removed: 0,
        }
    }

    /// `name in self.globals` for a function scope.
    pub fn in_globals(&self, name: &str) -> bool {
        ALWAYS_USED
            .iter()
            .position(|n| *n == name)
            .is_some_and(|i| self.globals_removed & (1 << i) == 0)
    }
}

/// Where a binding was last used: the scope the use was in, and its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Used {
    pub scope: ScopeId,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ImportForm {
    /// `import a` / `import a.b as c`.
    Plain,
    /// `import a.b` (binds `a`).
    Submodule,
    /// `from m import x [as y]`.
    From { module: String, real_name: String },
    /// `from m import *` (bound under the name `m.*`).
    Star,
    /// `from __future__ import x`: always used.
    Future,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Builtin,
    Argument,
    Assignment,
    /// `x := …` (an `Assignment` that goes to the enclosing non-comprehension scope).
    NamedExpr,
    /// `x: T` without a value: does not define `x`.
    Annotation,
    /// pyflakes' bare `Binding`: loop variables, tuple unpacking; never reported unused.
    Plain,
    Function,
    Class,
    /// `__all__ = [...]` at module level, with the string names it lists.
    Export(Vec<String>),
    Import {
        full_name: String,
        form: ImportForm,
    },
}

impl Kind {
    /// pyflakes' `Definition` (functions, classes, imports, builtins).
    pub fn is_definition(&self) -> bool {
        matches!(
            self,
            Kind::Builtin | Kind::Function | Kind::Class | Kind::Import { .. }
        )
    }

    /// pyflakes' `Assignment` (what `UnusedVariable` reports).
    pub fn is_assignment(&self) -> bool {
        matches!(self, Kind::Assignment | Kind::NamedExpr)
    }

    pub fn is_import(&self) -> bool {
        matches!(self, Kind::Import { .. })
    }

    fn is_submodule(&self) -> bool {
        matches!(
            self,
            Kind::Import {
                form: ImportForm::Submodule,
                ..
            }
        )
    }

    fn full_name(&self) -> Option<&str> {
        match self {
            Kind::Import { full_name, .. } => Some(full_name),
            _ => None,
        }
    }
}

pub(super) struct Binding<'t> {
    pub name: Cow<'t, str>,
    pub kind: Kind,
    /// The AST-equivalent node that made the binding (`None` for builtins): what
    /// `differentForks` compares.
    pub source: Option<Nd<'t>>,
    /// 1-based line and column (bytes + 1, as pyflakes prints) of that node.
    pub line: usize,
    pub col: usize,
    pub used: Option<Used>,
    /// Bindings in nested scopes that shadow this import: (line, col, shadowed by a loop
    /// variable). Reported as redefinitions when the import ends up unused.
    pub redefined: Vec<(usize, usize, bool)>,
}

impl<'t> Binding<'t> {
    pub fn new(
        name: Cow<'t, str>,
        kind: Kind,
        source: Option<Nd<'t>>,
        line: usize,
        col: usize,
    ) -> Self {
        Binding {
            name,
            kind,
            source,
            line,
            col,
            used: None,
            redefined: Vec::new(),
        }
    }

    /// pyflakes' `redefines(other)` for `self` replacing `other` (same name).
    pub fn redefines(&self, other: &Binding) -> bool {
        let same = self.name == other.name;
        match &self.kind {
            Kind::Annotation => false,
            Kind::Import { full_name, form } => {
                if *form == ImportForm::Submodule && other.kind.is_import() {
                    return other.kind.full_name() == Some(full_name);
                }
                if other.kind.is_submodule() {
                    return other.kind.full_name() == Some(full_name);
                }
                other.kind.is_definition() && same
            }
            Kind::Function | Kind::Class | Kind::Builtin => {
                (other.kind.is_definition() || other.kind.is_assignment()) && same
            }
            _ => other.kind.is_definition() && same,
        }
    }

    /// pyflakes' `_has_alias` of an import (its bound name differs from the last part of the
    /// name it imports).
    pub fn has_alias(&self) -> bool {
        match &self.kind {
            Kind::Import { full_name, .. } => full_name.rsplit('.').next() != Some(&*self.name),
            _ => false,
        }
    }

    /// `str(importation)`: how pyflakes names an import in "imported but unused".
    pub fn import_display(&self) -> String {
        let Kind::Import { full_name, form } = &self.kind else {
            return self.name.to_string();
        };
        match form {
            ImportForm::Submodule => full_name.clone(),
            ImportForm::Star => {
                if full_name.ends_with('.') {
                    format!("from {full_name} import *")
                } else {
                    self.name.to_string()
                }
            }
            ImportForm::From { real_name, .. } => {
                if *real_name != self.name {
                    format!("{full_name} as {}", self.name)
                } else {
                    full_name.clone()
                }
            }
            ImportForm::Plain | ImportForm::Future => {
                if self.has_alias() {
                    format!("{full_name} as {}", self.name)
                } else {
                    full_name.clone()
                }
            }
        }
    }
}

/// `dir(builtins)` of CPython 3.11 plus pyflakes' `_MAGIC_GLOBALS`, sorted.
pub(super) const BUILTINS: [&str; 161] = [
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BaseException",
    "BaseExceptionGroup",
    "BlockingIOError",
    "BrokenPipeError",
    "BufferError",
    "BytesWarning",
    "ChildProcessError",
    "ConnectionAbortedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "DeprecationWarning",
    "EOFError",
    "Ellipsis",
    "EncodingWarning",
    "EnvironmentError",
    "Exception",
    "ExceptionGroup",
    "False",
    "FileExistsError",
    "FileNotFoundError",
    "FloatingPointError",
    "FutureWarning",
    "GeneratorExit",
    "IOError",
    "ImportError",
    "ImportWarning",
    "IndentationError",
    "IndexError",
    "InterruptedError",
    "IsADirectoryError",
    "KeyError",
    "KeyboardInterrupt",
    "LookupError",
    "MemoryError",
    "ModuleNotFoundError",
    "NameError",
    "None",
    "NotADirectoryError",
    "NotImplemented",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PendingDeprecationWarning",
    "PermissionError",
    "ProcessLookupError",
    "RecursionError",
    "ReferenceError",
    "ResourceWarning",
    "RuntimeError",
    "RuntimeWarning",
    "StopAsyncIteration",
    "StopIteration",
    "SyntaxError",
    "SyntaxWarning",
    "SystemError",
    "SystemExit",
    "TabError",
    "TimeoutError",
    "True",
    "TypeError",
    "UnboundLocalError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "UnicodeError",
    "UnicodeTranslateError",
    "UnicodeWarning",
    "UserWarning",
    "ValueError",
    "Warning",
    "WindowsError",
    "ZeroDivisionError",
    "__annotations__",
    "__build_class__",
    "__builtins__",
    "__debug__",
    "__doc__",
    "__file__",
    "__import__",
    "__loader__",
    "__name__",
    "__package__",
    "__spec__",
    "abs",
    "aiter",
    "all",
    "anext",
    "any",
    "ascii",
    "bin",
    "bool",
    "breakpoint",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "classmethod",
    "compile",
    "complex",
    "copyright",
    "credits",
    "delattr",
    "dict",
    "dir",
    "divmod",
    "enumerate",
    "eval",
    "exec",
    "exit",
    "filter",
    "float",
    "format",
    "frozenset",
    "getattr",
    "globals",
    "hasattr",
    "hash",
    "help",
    "hex",
    "id",
    "input",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "license",
    "list",
    "locals",
    "map",
    "max",
    "memoryview",
    "min",
    "next",
    "object",
    "oct",
    "open",
    "ord",
    "pow",
    "print",
    "property",
    "quit",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "setattr",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "super",
    "tuple",
    "type",
    "vars",
    "zip",
];

pub(super) fn is_builtin(name: &str) -> Option<&'static str> {
    BUILTINS.binary_search(&name).ok().map(|i| BUILTINS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_sorted_for_binary_search() {
        assert!(BUILTINS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_builtin("print").is_some());
        assert!(is_builtin("WindowsError").is_some());
        assert!(is_builtin("foo").is_none());
    }
}
