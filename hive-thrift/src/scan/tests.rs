use super::*;
use proptest::prelude::*;

/// Builds binary-protocol bytes by hand so the scanner is tested independently of any encoder.
struct W(Vec<u8>);
impl W {
    fn header(name: &str, seqid: i32) -> Self {
        let mut w = W(Vec::new());
        w.0.extend_from_slice(&0x8001_0001u32.to_be_bytes());
        w.string(name.as_bytes());
        w.0.extend_from_slice(&seqid.to_be_bytes());
        w
    }
    fn string(&mut self, s: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(s.len() as i32).to_be_bytes());
        self.0.extend_from_slice(s);
        self
    }
    fn field(&mut self, t: u8, id: i16) -> &mut Self {
        self.0.push(t);
        self.0.extend_from_slice(&id.to_be_bytes());
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn stop(&mut self) -> &mut Self {
        self.0.push(0);
        self
    }
}

fn sample_message() -> Vec<u8> {
    let mut w = W::header("FetchResults", 7);
    w.field(ttype::STRUCT, 1)
        .field(ttype::I64, 1)
        .raw(&5i64.to_be_bytes())
        .field(ttype::LIST, 2)
        .raw(&[ttype::STRING])
        .raw(&3i32.to_be_bytes());
    w.string(b"a").string(b"").string(b"ccc");
    w.field(ttype::MAP, 3)
        .raw(&[ttype::STRING, ttype::STRUCT])
        .raw(&1i32.to_be_bytes());
    w.string(b"k").field(ttype::BOOL, 1).raw(&[1]).stop();
    w.field(ttype::LIST, 4)
        .raw(&[ttype::I32])
        .raw(&4i32.to_be_bytes())
        .raw(&[0; 16]);
    w.field(ttype::MAP, 5).raw(&[0, 0]).raw(&0i32.to_be_bytes());
    w.field(ttype::DOUBLE, 6).raw(&1.5f64.to_be_bytes());
    w.stop().stop();
    w.0
}

#[test]
fn whole_message_is_found() {
    let msg = sample_message();
    let mut buf = msg.clone();
    buf.extend_from_slice(b"next message");
    assert_eq!(
        MessageScanner::new(1 << 20).scan(&buf).unwrap(),
        Some(msg.len())
    );
}

#[test]
fn every_prefix_is_incomplete() {
    let msg = sample_message();
    for cut in 0..msg.len() {
        let mut scanner = MessageScanner::new(1 << 20);
        assert_eq!(scanner.scan(&msg[..cut]).unwrap(), None, "cut at {cut}");
    }
}

#[test]
fn resumes_across_arbitrary_splits() {
    let msg = sample_message();
    for step in 1..9 {
        let mut scanner = MessageScanner::new(1 << 20);
        let mut end = 0;
        let found = loop {
            end = (end + step).min(msg.len());
            if let Some(n) = scanner.scan(&msg[..end]).unwrap() {
                break n;
            }
            assert!(end < msg.len(), "step {step}: never completed");
        };
        assert_eq!(found, msg.len());
    }
}

#[test]
fn huge_string_claim_is_refused_immediately() {
    let mut w = W::header("OpenSession", 1);
    w.field(ttype::STRING, 1).raw(&0x7fff_ffffi32.to_be_bytes());
    let err = MessageScanner::new(1 << 20).scan(&w.0).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { .. }), "{err:?}");
}

#[test]
fn huge_list_count_is_refused_immediately() {
    let mut w = W::header("X", 1);
    w.field(ttype::LIST, 1)
        .raw(&[ttype::I64])
        .raw(&0x1000_0000i32.to_be_bytes());
    assert!(matches!(
        MessageScanner::new(1 << 20).scan(&w.0),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn negative_length_and_unknown_type_are_malformed() {
    let mut w = W::header("X", 1);
    w.field(ttype::STRING, 1).raw(&(-1i32).to_be_bytes());
    assert!(matches!(
        MessageScanner::new(1 << 20).scan(&w.0),
        Err(FrameError::Malformed(_))
    ));
    let mut w = W::header("X", 1);
    w.field(99, 1);
    w.raw(&[0; 8]);
    assert!(matches!(
        MessageScanner::new(1 << 20).scan(&w.0),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn bad_version_word_is_malformed() {
    assert!(matches!(
        MessageScanner::new(1 << 20).scan(&[0x80, 0x02, 0, 1, 0, 0, 0, 0]),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn deep_nesting_is_refused() {
    let mut w = W::header("X", 1);
    for _ in 0..100 {
        w.field(ttype::STRUCT, 1);
    }
    assert!(matches!(
        MessageScanner::new(1 << 20).scan(&w.0),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn non_strict_header_is_understood() {
    let mut w = W(Vec::new());
    w.string(b"GetInfo")
        .raw(&[1])
        .raw(&9i32.to_be_bytes())
        .stop();
    assert_eq!(
        MessageScanner::new(1024).scan(&w.0).unwrap(),
        Some(w.0.len())
    );
}

proptest! {
    /// Arbitrary bytes never panic, and a reported length never exceeds the input or the limit.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in 1usize..4096) {
        let mut scanner = MessageScanner::new(max);
        if let Ok(Some(n)) = scanner.scan(&bytes) {
            prop_assert!(n <= bytes.len());
            prop_assert!(n <= max);
        }
    }

    /// Garbage appended to a valid prefix is either refused or seen as a message of its own size.
    #[test]
    fn corrupted_messages_never_panic(pos in 0usize..200, byte in any::<u8>()) {
        let mut msg = sample_message();
        let at = pos % msg.len();
        msg[at] = byte;
        let _ = MessageScanner::new(1 << 16).scan(&msg);
    }
}
