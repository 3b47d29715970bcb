//! The FHIRPath text to an [`Expr`]: the tokenizer and the precedence-climbing parser, refusing what is
//! outside the subset at compile time. Apart from evaluation because it runs once per invariant at start-up.

use super::{Expr, Func, Op, TypeFn, Unsupported, Var};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Var(String),
    This,
    Sym(&'static str),
}

fn unsupported(message: impl Into<String>) -> Unsupported {
    Unsupported(message.into())
}

const SYMBOLS: [&str; 19] = [
    "<=", ">=", "!=", "!~", "(", ")", "[", "]", ",", ".", "=", "~", "<", ">", "|", "+", "-", "*",
    "/",
];

fn tokenize(text: &str) -> Result<Vec<Token>, Unsupported> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            break;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|&c| c == '`')
                .ok_or_else(|| unsupported("unterminated `identifier`"))?;
            tokens.push(Token::Ident(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
            continue;
        }
        if c == '\'' {
            let mut out = String::new();
            i += 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err(unsupported("unterminated string"));
                };
                i += 1;
                match c {
                    '\'' => break,
                    '\\' => {
                        let escaped = chars.get(i).copied().unwrap_or('\\');
                        i += 1;
                        out.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            'f' => '\u{c}',
                            other => other,
                        });
                    }
                    other => out.push(other),
                }
            }
            tokens.push(Token::Str(out));
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            tokens.push(Token::Num(chars[start..i].iter().collect()));
            continue;
        }
        if c == '%' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Var(chars[start..i].iter().collect()));
            continue;
        }
        if c == '$' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if name != "this" {
                return Err(unsupported(format!("${name}")));
            }
            tokens.push(Token::This);
            continue;
        }
        if c == '&' {
            tokens.push(Token::Sym("&"));
            i += 1;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let Some(sym) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) else {
            return Err(unsupported(format!("character '{c}'")));
        };
        tokens.push(Token::Sym(sym));
        i += sym.chars().count();
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

/// Binding powers, FHIRPath N1 §"Operator precedence" (higher binds tighter).
fn infix(token: &Token) -> Option<(u8, Infix)> {
    Some(match token {
        Token::Sym("*") => (9, Infix::Op(Op::Mul)),
        Token::Sym("/") => (9, Infix::Op(Op::Div)),
        Token::Sym("+") => (8, Infix::Op(Op::Add)),
        Token::Sym("-") => (8, Infix::Op(Op::Sub)),
        Token::Sym("&") => (8, Infix::Op(Op::Concat)),
        Token::Ident(k) if k == "is" => (7, Infix::Is),
        Token::Ident(k) if k == "as" => (7, Infix::As),
        Token::Sym("|") => (6, Infix::Op(Op::Union)),
        Token::Sym("<") => (5, Infix::Op(Op::Lt)),
        Token::Sym(">") => (5, Infix::Op(Op::Gt)),
        Token::Sym("<=") => (5, Infix::Op(Op::Le)),
        Token::Sym(">=") => (5, Infix::Op(Op::Ge)),
        Token::Sym("=") => (4, Infix::Op(Op::Eq)),
        Token::Sym("!=") => (4, Infix::Op(Op::Ne)),
        Token::Ident(k) if k == "in" => (3, Infix::Op(Op::In)),
        Token::Ident(k) if k == "contains" => (3, Infix::Op(Op::Contains)),
        Token::Ident(k) if k == "and" => (2, Infix::Op(Op::And)),
        Token::Ident(k) if k == "or" => (1, Infix::Op(Op::Or)),
        Token::Ident(k) if k == "xor" => (1, Infix::Op(Op::Xor)),
        Token::Ident(k) if k == "implies" => (0, Infix::Op(Op::Implies)),
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Infix {
    Op(Op),
    Is,
    As,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect(&mut self, sym: &'static str) -> Result<(), Unsupported> {
        match self.next() {
            Some(Token::Sym(s)) if s == sym => Ok(()),
            other => Err(unsupported(format!("expected '{sym}', found {other:?}"))),
        }
    }

    fn expr(&mut self, min: u8) -> Result<Expr, Unsupported> {
        let mut left = self.unary()?;
        while let Some((power, op)) = self.peek().and_then(infix) {
            if power < min {
                break;
            }
            self.at += 1;
            left = match op {
                Infix::Op(op) => {
                    let right = self.expr(power + 1)?;
                    Expr::Binary(op, Box::new(left), Box::new(right))
                }
                Infix::Is => Expr::Is(Box::new(left), self.type_name()?),
                Infix::As => Expr::As(Box::new(left), self.type_name()?),
            };
        }
        Ok(left)
    }

    fn type_name(&mut self) -> Result<String, Unsupported> {
        let mut name = match self.next() {
            Some(Token::Ident(name)) => name,
            other => return Err(unsupported(format!("expected a type, found {other:?}"))),
        };
        // FHIR.Patient, System.Boolean
        if matches!(self.peek(), Some(Token::Sym("."))) && (name == "FHIR" || name == "System") {
            self.at += 1;
            name = match self.next() {
                Some(Token::Ident(n)) => n,
                other => return Err(unsupported(format!("expected a type, found {other:?}"))),
            };
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Expr, Unsupported> {
        if matches!(self.peek(), Some(Token::Sym("-"))) {
            self.at += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        let mut base = self.term()?;
        loop {
            match self.peek() {
                Some(Token::Sym(".")) => {
                    self.at += 1;
                    let name = match self.next() {
                        Some(Token::Ident(name)) => name,
                        other => return Err(unsupported(format!("after '.': {other:?}"))),
                    };
                    base = self.invocation(Some(base), name)?;
                }
                Some(Token::Sym("[")) => {
                    self.at += 1;
                    let index = self.expr(0)?;
                    self.expect("]")?;
                    base = Expr::Index(Box::new(base), Box::new(index));
                }
                _ => return Ok(base),
            }
        }
    }

    fn invocation(&mut self, base: Option<Expr>, name: String) -> Result<Expr, Unsupported> {
        if !matches!(self.peek(), Some(Token::Sym("("))) {
            return Ok(Expr::Member(base.map(Box::new), name));
        }
        self.at += 1;
        let mut args = Vec::new();
        if !matches!(self.peek(), Some(Token::Sym(")"))) {
            loop {
                args.push(self.expr(0)?);
                match self.next() {
                    Some(Token::Sym(",")) => continue,
                    Some(Token::Sym(")")) => break,
                    other => return Err(unsupported(format!("in arguments: {other:?}"))),
                }
            }
        } else {
            self.at += 1;
        }
        let base = base.map(Box::new);
        let type_fn = match name.as_str() {
            "ofType" => Some(TypeFn::OfType),
            "is" => Some(TypeFn::Is),
            "as" => Some(TypeFn::As),
            _ => None,
        };
        if let Some(type_fn) = type_fn {
            return match args.as_slice() {
                [Expr::Member(None, t)] => Ok(Expr::TypeFn(base, type_fn, t.clone())),
                _ => Err(unsupported(format!("{name}() needs a type name"))),
            };
        }
        let (func, min, max) =
            Func::from_name(&name).ok_or_else(|| unsupported(format!("function {name}()")))?;
        if args.len() < min || args.len() > max {
            return Err(unsupported(format!(
                "{name}() with {} arguments",
                args.len()
            )));
        }
        Ok(Expr::Call(base, func, args))
    }

    fn term(&mut self) -> Result<Expr, Unsupported> {
        match self.next() {
            Some(Token::Sym("(")) => {
                let inner = self.expr(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Some(Token::Str(s)) => Ok(Expr::Str(s)),
            Some(Token::Num(n)) => match n.parse::<i64>() {
                Ok(i) => Ok(Expr::Int(i)),
                Err(_) => n
                    .parse::<f64>()
                    .map(Expr::Num)
                    .map_err(|_| unsupported(format!("number {n}"))),
            },
            Some(Token::This) => Ok(Expr::This),
            Some(Token::Var(v)) => Ok(Expr::Var(match v.as_str() {
                "resource" => Var::Resource,
                "rootResource" => Var::RootResource,
                "context" => Var::Context,
                "ucum" => Var::Ucum,
                other => return Err(unsupported(format!("%{other}"))),
            })),
            Some(Token::Ident(name)) if name == "true" => Ok(Expr::Bool(true)),
            Some(Token::Ident(name)) if name == "false" => Ok(Expr::Bool(false)),
            Some(Token::Ident(name)) => self.invocation(None, name),
            other => Err(unsupported(format!("unexpected {other:?}"))),
        }
    }
}

/// Compiles an expression of the subset, or says why it is outside it.
pub fn compile(text: &str) -> Result<Expr, Unsupported> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
    };
    let expr = parser.expr(0)?;
    if parser.at < parser.tokens.len() {
        return Err(unsupported(format!(
            "unexpected {:?}",
            parser.tokens[parser.at]
        )));
    }
    Ok(expr)
}
