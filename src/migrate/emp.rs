//! The EMP wire format (emu-manager protocol): JSON objects back to back on a UNIX stream
//! socket, no delimiter between them.
//!
//! Requests are `{ "execute" : "<cmd>"}` or `{ "execute" : "<cmd>", "arguments" : { "k":"v" } }`
//! with every value a JSON string (xenserver/emu-manager `em-client.c` and `lib.c`
//! `argument_add_string`, at c3a0bfb); xcp-ng's emu-manager writes the compact form
//! `{"execute":"migrate_init"}`. Replies and events are those libempserver writes, as logged in
//! xcp-ng/xcp issues 72, 241 and 269. The client accepts only the keys `return`, `error`,
//! `event`, `data`, `QMP` and `timestamp`, in a 1024-byte buffer (`em-client.c`).

use serde_json::{Map, Value};

/// Largest request accepted, bytes: far above emu-manager's 1024-byte messages, and what a
/// client's buffer may hold while an object is incomplete (no memory in proportion to a claim).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why the byte stream of a client cannot be read as EMP messages. After one of these the
/// stream is out of step, so the client is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON.
    #[error("malformed JSON at byte {offset}: {reason}")]
    Syntax {
        /// Offset in the bytes not yet consumed.
        offset: usize,
        /// serde_json's text.
        reason: String,
    },
    /// A JSON value that is not an object (EMP messages are objects).
    #[error("expected a JSON object, got '{found}'")]
    NotAnObject {
        /// The first byte found, as a character.
        found: char,
    },
    /// An object longer than the bound.
    #[error("message longer than {max_bytes} bytes")]
    TooLong {
        /// The bound.
        max_bytes: usize,
    },
}

/// Splits a client's byte stream into JSON objects: spaced or compact, several in one read,
/// one split across reads.
#[derive(Debug)]
pub struct Reader {
    pending: Vec<u8>,
    max_bytes: usize,
}

impl Reader {
    /// A reader keeping at most `max_bytes` of an incomplete object.
    pub fn new(max_bytes: usize) -> Self {
        Reader {
            pending: Vec::new(),
            max_bytes,
        }
    }

    /// Add `bytes` and return every object now complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Value>, FrameError> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let start = self
                .pending
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.pending.len());
            self.pending.drain(..start);
            let Some(&first) = self.pending.first() else {
                break;
            };
            if first != b'{' {
                return Err(FrameError::NotAnObject {
                    found: char::from(first),
                });
            }
            let mut it = serde_json::Deserializer::from_slice(&self.pending).into_iter::<Value>();
            match it.next() {
                Some(Ok(value)) => {
                    let used = it.byte_offset();
                    self.pending.drain(..used);
                    out.push(value);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    return Err(FrameError::Syntax {
                        offset: e.column(),
                        reason: e.to_string(),
                    })
                }
                None => break,
            }
        }
        if self.pending.len() > self.max_bytes {
            return Err(FrameError::TooLong {
                max_bytes: self.max_bytes,
            });
        }
        Ok(out)
    }

    /// Bytes of an incomplete object held.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

/// A request, typed (the actions table of `xg_emu.c`).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `track_dirty`: accepted and ignored (qemu-upstream tracks its own dirty pages).
    TrackDirty,
    /// `migrate_init`: the stream fd comes with it by SCM_RIGHTS.
    MigrateInit,
    /// `set_args` with its `arguments` object, if any.
    SetArgs(Option<Map<String, Value>>),
    /// `migrate_progress`: this client wants the progress events.
    MigrateProgress,
    /// `migrate_live`: a live save.
    MigrateLive,
    /// `migrate_nonlive`: a save of a domain already paused.
    MigrateNonlive,
    /// `migrate_pause`: stop precopy at the next policy check.
    MigratePause,
    /// `migrate_paused`: the domain is suspended; the suspend callback may return.
    MigratePaused,
    /// `migrate_abort`: fail the save in whichever phase it is.
    MigrateAbort,
    /// `restore`: read the stream into the domain.
    Restore,
    /// `quit`: leave the command loop.
    Quit,
}

impl Command {
    /// The command name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::TrackDirty => "track_dirty",
            Command::MigrateInit => "migrate_init",
            Command::SetArgs(_) => "set_args",
            Command::MigrateProgress => "migrate_progress",
            Command::MigrateLive => "migrate_live",
            Command::MigrateNonlive => "migrate_nonlive",
            Command::MigratePause => "migrate_pause",
            Command::MigratePaused => "migrate_paused",
            Command::MigrateAbort => "migrate_abort",
            Command::Restore => "restore",
            Command::Quit => "quit",
        }
    }

    /// Type a request object. The error is the text for the `error` reply.
    pub fn parse(request: &Value) -> Result<Command, String> {
        let execute = match request.get("execute") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err("\"execute\" is not a string".into()),
            None => return Err("no \"execute\" in the request".into()),
        };
        Ok(match execute {
            "track_dirty" => Command::TrackDirty,
            "migrate_init" => Command::MigrateInit,
            "set_args" => Command::SetArgs(match request.get("arguments") {
                Some(Value::Object(map)) => Some(map.clone()),
                _ => None,
            }),
            "migrate_progress" => Command::MigrateProgress,
            "migrate_live" => Command::MigrateLive,
            "migrate_nonlive" => Command::MigrateNonlive,
            "migrate_pause" => Command::MigratePause,
            "migrate_paused" => Command::MigratePaused,
            "migrate_abort" => Command::MigrateAbort,
            "restore" => Command::Restore,
            "quit" => Command::Quit,
            other => return Err(format!("unknown command '{}'", clip(other))),
        })
    }
}

/// A peer's text shown in a reply or a log line, cut to a readable length.
fn clip(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    if s.chars().count() > MAX_CHARS {
        s.chars().take(MAX_CHARS).collect::<String>() + "..."
    } else {
        s.to_string()
    }
}

/// What `set_args` may set (`setable_args` in `xg_emu.c`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Args {
    /// `store_port`: the xenstore event channel, for a restore.
    pub store_port: Option<u32>,
    /// `console_port`: the console event channel, for a restore.
    pub console_port: Option<u32>,
    /// `pv`: the guest is PV (restore then is not HVM).
    pub pv: bool,
    /// `vgpu`: the guest has a vGPU.
    pub vgpu: bool,
}

/// The `error` reply of a `set_args` without an arguments object.
pub const NO_ARGS: &str = "No Args";
/// The `error` reply of a `set_args` with a bad key or value.
pub const BAD_ARGS: &str = "Bad Args";

impl Args {
    /// Apply a `set_args` as C does: each good key is applied even when another is bad. Returns
    /// the problems, one per bad key (C's `xg_err` lines); an empty list means `return`.
    pub fn apply(&mut self, arguments: &Map<String, Value>) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in arguments {
            let Value::String(text) = value else {
                problems.push(format!("expecting only string arguments.  ({})", clip(key)));
                continue;
            };
            let bad = || format!("Bad args {} = {}", clip(key), clip(text));
            match key.as_str() {
                "store_port" => match port(text) {
                    Some(p) => self.store_port = Some(p),
                    None => problems.push(bad()),
                },
                "console_port" => match port(text) {
                    Some(p) => self.console_port = Some(p),
                    None => problems.push(bad()),
                },
                "pv" | "vgpu" => {
                    let flag = match text.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            problems.push(bad());
                            continue;
                        }
                    };
                    if key == "pv" {
                        self.pv = flag;
                    } else {
                        self.vgpu = flag;
                    }
                }
                _ => problems.push(format!("Unknown arg: {}", clip(key))),
            }
        }
        problems
    }
}

/// An event channel port as `strtol(s, &end, 10)` with nothing left over reads it (leading
/// blanks and a `+` allowed), but refusing what C would take silently: the empty string (0),
/// negative numbers and numbers past `INT_MAX`.
fn port(s: &str) -> Option<u32> {
    let digits = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u32>().ok().filter(|&p| p <= i32::MAX as u32)
}

/// `{ "return" : {} }`: the command was accepted.
pub const RETURN: &str = r#"{ "return" : {} }"#;

/// `{ "error" : "<text>" }`.
pub fn error_reply(text: &str) -> String {
    format!(r#"{{ "error" : {} }}"#, Value::String(text.to_string()))
}

/// A MIGRATION progress event: pages sent so far, pages still dirty (-1 when not known, in the
/// middle of an iteration) and the precopy iteration.
pub fn progress_event(sent_pages: u64, remaining_pages: i64, iteration: u32) -> String {
    format!(
        r#"{{ "event" : "MIGRATION", "data": {{"sent": {sent_pages},"remaining": {remaining_pages},"iteration": {iteration}}}}}"#
    )
}

/// The MIGRATION event that ends a save (`result` absent) or a restore (`result` is
/// `"<store gfn> <console gfn>"`).
pub fn completed_event(result: Option<&str>) -> String {
    match result {
        Some(r) => format!(
            r#"{{"event":"MIGRATION","data":{{"status":"completed","result":{}}}}}"#,
            Value::String(r.to_string())
        ),
        None => r#"{"event":"MIGRATION","data":{"status":"completed"}}"#.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(values: &[Value]) -> Vec<Command> {
        values.iter().map(|v| Command::parse(v).unwrap()).collect()
    }

    #[test]
    fn emu_manager_and_xcp_ng_forms() {
        let mut r = Reader::new(MAX_MESSAGE_BYTES);
        // emu-manager's spaced forms, byte for byte (em-client.c snprintf formats).
        let got = r.feed(br#"{ "execute" : "migrate_init"}"#).unwrap();
        assert_eq!(commands(&got), [Command::MigrateInit]);
        let got = r
            .feed(br#"{ "execute" : "set_args", "arguments" : { "store_port":"5", "console_port":"6" } }"#)
            .unwrap();
        let Command::SetArgs(Some(map)) = Command::parse(&got[0]).unwrap() else {
            panic!("{got:?}")
        };
        let mut args = Args::default();
        assert!(args.apply(&map).is_empty());
        assert_eq!((args.store_port, args.console_port), (Some(5), Some(6)));
        // xcp-ng's compact form.
        let got = r.feed(br#"{"execute":"migrate_live"}"#).unwrap();
        assert_eq!(commands(&got), [Command::MigrateLive]);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn two_objects_in_one_read_and_one_split_across_reads() {
        let mut r = Reader::new(MAX_MESSAGE_BYTES);
        let got = r
            .feed(br#"{ "execute" : "migrate_pause"}{ "execute" : "migrate_paused"}"#)
            .unwrap();
        assert_eq!(
            commands(&got),
            [Command::MigratePause, Command::MigratePaused]
        );
        let whole =
            br#"{ "execute" : "set_args", "arguments" : { "pv":"true" } } {"execute":"quit"}"#;
        let mut all = Vec::new();
        for byte in whole.iter() {
            all.extend(r.feed(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(all.len(), 2);
        assert!(matches!(
            Command::parse(&all[0]),
            Ok(Command::SetArgs(Some(_)))
        ));
        assert_eq!(Command::parse(&all[1]), Ok(Command::Quit));
        // A split inside a string and a tail kept for the next read.
        let got = r.feed(br#"{"execute":"track_"#).unwrap();
        assert!(got.is_empty());
        let got = r.feed(br#"dirty"} {"exe"#).unwrap();
        assert_eq!(commands(&got), [Command::TrackDirty]);
        let got = r.feed(br#"cute":"restore"}"#).unwrap();
        assert_eq!(commands(&got), [Command::Restore]);
    }

    #[test]
    fn bad_streams() {
        let mut r = Reader::new(MAX_MESSAGE_BYTES);
        assert!(matches!(
            r.feed(br#"{"execute":"quit",}"#),
            Err(FrameError::Syntax { .. })
        ));
        let mut r = Reader::new(MAX_MESSAGE_BYTES);
        assert_eq!(r.feed(b"  42"), Err(FrameError::NotAnObject { found: '4' }));
        // An object that never ends is refused at the bound, not buffered without end.
        let mut r = Reader::new(1024);
        r.feed(br#"{"execute":""#).unwrap();
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = r.feed(&[b'x'; 64]) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(FrameError::TooLong { max_bytes: 1024 }));
        assert!(r.pending_bytes() <= 1024 + 64);
        // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
        let mut r = Reader::new(MAX_MESSAGE_BYTES);
        let deep = "{\"a\":".repeat(1000);
        match r.feed(deep.as_bytes()) {
            Err(FrameError::Syntax { reason, .. }) => {
                assert!(reason.contains("recursion"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn typed_commands() {
        let parse = |s: &str| Command::parse(&serde_json::from_str(s).unwrap());
        for name in [
            "track_dirty",
            "migrate_init",
            "migrate_progress",
            "migrate_live",
            "migrate_nonlive",
            "migrate_pause",
            "migrate_paused",
            "migrate_abort",
            "restore",
            "quit",
        ] {
            assert_eq!(
                parse(&format!(r#"{{"execute":"{name}"}}"#)).unwrap().name(),
                name
            );
        }
        assert_eq!(
            parse(r#"{"execute":"set_args"}"#),
            Ok(Command::SetArgs(None))
        );
        assert_eq!(
            parse(r#"{"execute":"migrate_go"}"#),
            Err("unknown command 'migrate_go'".into())
        );
        assert_eq!(
            parse(r#"{"execute":7}"#),
            Err("\"execute\" is not a string".into())
        );
        assert_eq!(
            parse(r#"{"arguments":{}}"#),
            Err("no \"execute\" in the request".into())
        );
        let long = "y".repeat(5000);
        let e = parse(&format!(r#"{{"execute":"{long}"}}"#)).unwrap_err();
        assert!(e.len() < 100, "{e}");
    }

    #[test]
    fn set_args_as_c_checks_them() {
        let map = |s: &str| match serde_json::from_str::<Value>(s).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let mut a = Args::default();
        assert!(a.apply(&map(r#"{"pv":"true","vgpu":"false"}"#)).is_empty());
        assert!(a.pv && !a.vgpu);
        // Values must be JSON strings.
        let p = a.apply(&map(r#"{"store_port":5}"#));
        assert_eq!(p, ["expecting only string arguments.  (store_port)"]);
        assert_eq!(a.store_port, None);
        // Good keys still apply next to bad ones, as in C.
        let p = a.apply(&map(
            r#"{"store_port":"7","console_port":"x","pv":"yes","colour":"red"}"#,
        ));
        assert_eq!(
            p,
            // serde_json's map is ordered by key.
            [
                "Unknown arg: colour",
                "Bad args console_port = x",
                "Bad args pv = yes",
            ]
        );
        assert_eq!(a.store_port, Some(7));
        assert!(a.pv);
        for bad in ["", "-1", "2147483648", "5 ", "0x5", "+"] {
            assert_eq!(port(bad), None, "{bad:?}");
        }
        assert_eq!(port(" +12"), Some(12));
        assert_eq!(port("2147483647"), Some(i32::MAX as u32));
    }

    #[test]
    fn replies_and_events_byte_for_byte() {
        assert_eq!(RETURN, r#"{ "return" : {} }"#);
        assert_eq!(error_reply("Bad Args"), r#"{ "error" : "Bad Args" }"#);
        assert_eq!(error_reply("a \"q\"\n"), r#"{ "error" : "a \"q\"\n" }"#);
        // xcp-ng/xcp issue 269's log line.
        assert_eq!(
            progress_event(1264640, -1, 1),
            r#"{ "event" : "MIGRATION", "data": {"sent": 1264640,"remaining": -1,"iteration": 1}}"#
        );
        assert_eq!(
            completed_event(None),
            r#"{"event":"MIGRATION","data":{"status":"completed"}}"#
        );
        assert_eq!(
            completed_event(Some("1044476 1044479")),
            r#"{"event":"MIGRATION","data":{"status":"completed","result":"1044476 1044479"}}"#
        );
        // Every message is one JSON object with only the keys emu-manager accepts.
        for m in [
            RETURN.to_string(),
            error_reply("x"),
            progress_event(1, 2, 3),
            completed_event(Some("1 2")),
        ] {
            let v: Value = serde_json::from_str(&m).unwrap();
            for k in v.as_object().unwrap().keys() {
                assert!(
                    ["return", "error", "event", "data"].contains(&k.as_str()),
                    "{k}"
                );
            }
        }
    }
}
