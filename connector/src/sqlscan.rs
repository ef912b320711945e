//! A small SQL scanner for migration files: splits a script into
//! statements (respecting quotes, dollar quotes, comments and `BEGIN ATOMIC`
//! bodies) so that transaction control can be refused and an error position
//! can be traced back to its statement and line.

/// One statement of a script: byte range and first keyword (uppercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedStatement {
    pub start: usize,
    pub end: usize,
    pub keyword: String,
    /// The first two keywords, for `PREPARE TRANSACTION` and friends.
    pub keywords: Vec<String>,
}

/// A byte that continues an identifier in PostgreSQL's lexer (`ident_cont`):
/// letters, digits, `_`, `$` and every non-ASCII byte. `a$$` is one
/// identifier there, not `a` and a dollar quote.
fn ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Whether a statement's first words are `CREATE [OR REPLACE] FUNCTION|PROCEDURE`
/// (the only statements whose `BEGIN ATOMIC … END` body holds semicolons).
fn routine_head(head: &[String]) -> bool {
    let w: Vec<&str> = head.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        ["CREATE", "FUNCTION" | "PROCEDURE", ..]
            | ["CREATE", "OR", "REPLACE", "FUNCTION" | "PROCEDURE", ..]
    )
}

/// Split `sql` into statements.
pub fn statements(sql: &str) -> Vec<ScannedStatement> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut start = 0;
    let mut words: Vec<String> = Vec::new();
    let mut head: Vec<String> = Vec::new();
    let mut paren_depth = 0usize;
    let mut atomic_depth = 0usize;
    let mut prev_word = String::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                // E'…' strings take backslash escapes; '' is a quote in both.
                // The E must stand alone: `somee'…'` is an identifier and a plain string.
                let escapes = i > 0
                    && (b[i - 1] == b'E' || b[i - 1] == b'e')
                    && (i < 2 || !ident_byte(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            b'"' => {
                i += 1;
                while i < b.len() && !(b[i] == b'"' && b.get(i + 1) != Some(&b'"')) {
                    i += if b[i] == b'"' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            b'$' => {
                // $tag$ … $tag$
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80)
                {
                    j += 1;
                }
                let tag_is_word = j > i + 1 && !b[i + 1].is_ascii_digit();
                if j < b.len() && b[j] == b'$' && (j == i + 1 || tag_is_word) {
                    let tag = &sql[i..=j];
                    match sql[j + 1..].find(tag) {
                        Some(k) => i = j + 1 + k + tag.len(),
                        None => i = b.len(),
                    }
                    continue;
                }
                i += 1;
                continue;
            }
            b'(' => paren_depth += 1,
            b')' => paren_depth = paren_depth.saturating_sub(1),
            // `;` inside parentheses belongs to the statement (CREATE RULE … DO (a; b))
            b';' if atomic_depth == 0 && paren_depth == 0 => {
                push(&mut out, sql, start, i, &words);
                words.clear();
                head.clear();
                paren_depth = 0;
                i += 1;
                start = i;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let s = i;
                while i < b.len() && ident_byte(b[i]) {
                    i += 1;
                }
                let word = sql[s..i].to_ascii_uppercase();
                if head.len() < 4 {
                    head.push(word.clone());
                }
                let opens_block = (prev_word == "BEGIN"
                    && word == "ATOMIC"
                    && paren_depth == 0
                    && routine_head(&head))
                    || (atomic_depth > 0 && word == "CASE");
                if opens_block {
                    atomic_depth += 1;
                } else if atomic_depth > 0 && word == "END" {
                    atomic_depth -= 1;
                }
                if words.len() < 2 {
                    words.push(word.clone());
                }
                prev_word = word;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    push(&mut out, sql, start, b.len(), &words);
    out
}

fn push(out: &mut Vec<ScannedStatement>, sql: &str, start: usize, end: usize, words: &[String]) {
    if words.is_empty() && sql[start..end].trim().is_empty() {
        return;
    }
    if let Some(first) = words.first() {
        out.push(ScannedStatement {
            start,
            end,
            keyword: first.clone(),
            keywords: words.to_vec(),
        });
    }
}

/// Whether a statement controls the transaction (refused in migrations).
pub fn is_transaction_control(s: &ScannedStatement) -> bool {
    let second = s.keywords.get(1).map(String::as_str).unwrap_or("");
    match s.keyword.as_str() {
        "BEGIN" | "COMMIT" | "ROLLBACK" | "ABORT" | "END" | "SAVEPOINT" | "RELEASE" => true,
        "START" => second == "TRANSACTION",
        "PREPARE" => second == "TRANSACTION",
        _ => false,
    }
}

/// The offset of the first byte at or after `from` that is neither
/// whitespace nor part of a comment.
pub fn skip_blank(sql: &str, from: usize) -> usize {
    let b = sql.as_bytes();
    let mut i = from.min(b.len());
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&b'-') && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b.get(i) == Some(&b'/') && b.get(i + 1) == Some(&b'*') {
            i = sql[i + 2..]
                .find("*/")
                .map(|k| i + 2 + k + 2)
                .unwrap_or(b.len());
        } else {
            return i;
        }
    }
}

/// The 1-based statement number and line of a byte offset.
pub fn locate(sql: &str, byte_offset: usize) -> (usize, usize) {
    let offset = byte_offset.min(sql.len());
    let line = sql[..offset].matches('\n').count() + 1;
    let index = statements(sql)
        .iter()
        .position(|s| offset <= s.end)
        .map(|i| i + 1)
        .unwrap_or(1);
    (index, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kws(sql: &str) -> Vec<String> {
        statements(sql).into_iter().map(|s| s.keyword).collect()
    }

    #[test]
    fn splits_respecting_quotes_and_bodies() {
        let sql = "create table t (a text default 'x;y');\n\
                   -- comment; with semicolon\n\
                   create function f() returns int language plpgsql as $$ begin return 1; end $$;\n\
                   /* block; */ select E'it\\'s;' , \"we;ird\";\n\
                   create function g() returns int language sql begin atomic select 1; select case when true then 2 end; end;\n\
                   commit";
        assert_eq!(kws(sql), ["CREATE", "CREATE", "SELECT", "CREATE", "COMMIT"]);
        let control: Vec<bool> = statements(sql).iter().map(is_transaction_control).collect();
        assert_eq!(control, [false, false, false, false, true]);
    }

    #[test]
    fn recognises_transaction_control() {
        for sql in [
            "BEGIN",
            "begin;",
            "start transaction",
            "COMMIT",
            "rollback",
            "savepoint a",
            "release a",
            "prepare transaction 'x'",
            "end",
        ] {
            assert!(statements(sql).iter().any(is_transaction_control), "{sql}");
        }
        for sql in [
            "prepare q as select 1",
            "create table begin_x ()",
            "select 'begin'",
        ] {
            assert!(!statements(sql).iter().any(is_transaction_control), "{sql}");
        }
    }

    #[test]
    fn keeps_rule_actions_together() {
        let sql = "create rule r as on insert to t do also (insert into a values (1); insert into b values (2));\nselect 1;";
        assert_eq!(kws(sql), ["CREATE", "SELECT"]);
        assert_eq!(
            skip_blank(sql, sql.find(";\n").unwrap() + 1),
            sql.find("select 1").unwrap()
        );
        assert_eq!(skip_blank("  -- c\n /* d */ x", 0), 16);
    }

    #[test]
    fn locates_positions() {
        let sql = "create table a ();\ncreate table b ();\nselect bogus;";
        let off = sql.find("bogus").unwrap();
        assert_eq!(locate(sql, off), (3, 3));
    }
}
