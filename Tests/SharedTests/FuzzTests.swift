// A seeded mutational fuzzer for the frame reader and the model-file loader, bounded by time and
// by executions. Valid frames, streams and model files made here are mutated (bit flips, byte
// edits, inserts, deletes, duplicated ranges, truncation, header-length edits, JSON number and
// string edits, duplicated entries, splices of two inputs) with a fixed seed, and each result is
// read by FrameReader; every outcome must be a value or a DDPMError whose message is one line.
// What reads without error is checked further: it survives a write/read round trip, `tensor
// info`'s text holds no control character, Batch accepts it only with finite x of positive
// sample sizes, and a model frame goes through ModelFile.load. A trap cannot be caught in-process:
// it kills the test run, and the input that caused it is left in the scratch file named in the
// log (FUZZ_INPUT=path), to be replayed with DDPM_FUZZ_REPLAY=path.
//
// Mutated model files whose architecture metadata changed (a width of 2^31 would allocate without
// bound, in the NN code) are not loaded in-process: testModelFileMutationsOutOfProcess hands them
// to `denoise --model` in a child process bounded in time and memory and reports the outcomes.
//
// Budget: DDPM_FUZZ_SECONDS (default 15 for the frame reader, 2/3 of it for the model loader, 1/3
// for the importers), DDPM_FUZZ_ITERATIONS (default 1,000,000 per target), DDPM_FUZZ_SEED (default
// 0x5EED), DDPM_FUZZ_PROCESS_RUNS (default 40). CI runs the defaults; run longer locally, e.g.
//   DDPM_FUZZ_SECONDS=600 swift test -c release --disable-swift-testing --filter Fuzz
//
// Shared is built -Ounchecked: here an integer overflow wraps instead of trapping. The
// coverage-guided libFuzzer run (FuzzLibFuzzerTests.swift) compiles Format and IO with checks on.
import Foundation
import XCTest
@testable import Shared

/// SplitMix64: a small deterministic generator, so a seed replays the same inputs.
struct FuzzRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
    mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
    mutating func pick<T>(_ a: [T]) -> T { a[below(a.count)] }
}

/// The fuzzer's settings from the environment.
struct FuzzBudget {
    var seconds: Double
    var iterations: Int
    var seed: UInt64
    var processRuns: Int

    static var current: FuzzBudget {
        let env = ProcessInfo.processInfo.environment
        return FuzzBudget(seconds: env["DDPM_FUZZ_SECONDS"].flatMap(Double.init) ?? 15,
                          iterations: env["DDPM_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 1_000_000,
                          seed: env["DDPM_FUZZ_SEED"].flatMap { UInt64($0.hasPrefix("0x") ? String($0.dropFirst(2)) : $0, radix: $0.hasPrefix("0x") ? 16 : 10) } ?? 0x5EED,
                          processRuns: env["DDPM_FUZZ_PROCESS_RUNS"].flatMap(Int.init) ?? 40)
    }
}

/// Outcomes by class: "ok" or the error message with numbers and quoted names blanked.
struct FuzzTally {
    var executions = 0
    var counts: [String: Int] = [:]

    mutating func add(_ outcome: String) { executions += 1; counts[outcome, default: 0] += 1 }

    /// "frame 3: tensor 'x\u{1b}': shape [4] ..." -> "tensor '*': shape [#] ...".
    static func errorClass(_ message: String) -> String {
        var s = Substring(message)
        // Drop the "NAME: frame N: " prefix the reader adds.
        if let r = s.range(of: ": frame ") , let colon = s[r.upperBound...].firstIndex(of: ":") {
            s = s[s.index(after: colon)...].drop(while: { $0 == " " })
        }
        // Paths of temporary files vary from run to run; quoted headers and magic bytes from run to input.
        if let r = s.range(of: ".st: ") { s = s[r.upperBound...] }
        if let r = s.range(of: " (header: ") { s = s[..<r.lowerBound] }
        if let r = s.range(of: "bad IDX magic ") { s = s[..<r.upperBound] }
        var out = ""
        var inQuote = false, blanking = false, keeping = false
        for c in s {
            if c == "'" { inQuote.toggle(); out.append(inQuote ? "'*" : "'"); blanking = false; keeping = false; continue }
            if inQuote { continue }
            if c.isNumber {
                // Digits of a word (F32, UTF-8) stay; numbers become #.
                if keeping { out.append(c); continue }
                if let p = out.last, p.isLetter || (p == "-" && out.dropLast().last?.isLetter == true) { keeping = true; out.append(c); continue }
                if !blanking { out.append("#") }
                blanking = true
                continue
            }
            blanking = false; keeping = false
            out.append(c)
        }
        return "error: " + String(out.prefix(90))
    }

    func report(_ title: String, seconds: Double, top: Int = 40) -> String {
        var lines = ["\(title): \(executions) executions in \(String(format: "%.1f", seconds)) s, \(counts.count) outcome classes"]
        for (k, v) in counts.sorted(by: { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }).prefix(top) {
            lines.append(String(format: "  %8d  ", v) + k)
        }
        if counts.count > top { lines.append("  ... \(counts.count - top) more classes") }
        return lines.joined(separator: "\n")
    }
}

/// Mutations of frame streams.
struct FrameMutator {
    var rng: FuzzRandom
    let corpus: [[UInt8]]
    /// Not frames (.npy, IDX): number and string edits apply anywhere in the input.
    var anywhere = false

    static let interestingBytes: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x0A, 0x1B,
                                            UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "{"), UInt8(ascii: "}"),
                                            UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: ","), UInt8(ascii: ":"),
                                            UInt8(ascii: "-"), UInt8(ascii: "0"), UInt8(ascii: "9"), UInt8(ascii: "e")]
    static let interestingNumbers = ["0", "1", "2", "3", "-1", "-0", "7", "8", "255", "256", "65535", "65536", "2147483647",
                                     "2147483648", "4294967296", "268435456", "1099511627775", "1099511627776",
                                     "70368744177663", "70368744177664", "17179869184", "9007199254740993",
                                     "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                                     "18446744073709551616", "99999999999999999999999", "1.5", "1e3", "1E+2", "1e400",
                                     "-1e400", "0.0", "00", "01", "1.", ".5", "1e", "-", "NaN", "Infinity"]
    static let interestingStrings = ["F32", "F64", "I64", "I32", "U8", "F16", "BF16", "I8", "U16", "BOOL", "f32", "",
                                     "dtype", "shape", "data_offsets", "__metadata__", "x", "y", "t", "eps", "kind",
                                     "batch", "schedule", "model", "checkpoint", "classifier", "beta", "schedule.beta",
                                     "\\u0000", "\\u001b[31m", "\\ud800", "\\udc00", "\\ud800\\udc00", "\\u+12a", "\\u12",
                                     "\\x41", "\\", "\u{1b}]0;t\u{07}", "a\nb", "\u{202e}", "\u{7f}", "\u{0085}",
                                     "😀x", "e\u{301}ab", "\\ud83d\\ude00", "名前"]
    static let invalidUTF8: [[UInt8]] = [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0x80]]
    static let lengths: [UInt64] = [0, 1, 2, 7, 8, 9, 0xFF, 0x100, UInt64(maxHeaderBytes), UInt64(maxHeaderBytes) + 1,
                                    16 << 30, 1 << 40, 1 << 63, UInt64.max, UInt64.max - 7]

    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var b = input
        for _ in 0..<(1 + rng.below(4)) { b = mutateOnce(b) }
        return b
    }

    /// The first frame's header bytes, when its length field is sane.
    func headerRange(_ b: [UInt8]) -> Range<Int>? {
        guard b.count >= 10 else { return nil }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(b[i]) << (8 * UInt64(i)) }
        guard n >= 2, n <= UInt64(b.count - 8) else { return nil }
        return 8 ..< 8 + Int(n)
    }

    /// Adds `delta` to the first frame's header length (so a header edit stays in step), mostly.
    mutating func adjustLength(_ b: inout [UInt8], by delta: Int) {
        guard !anywhere, b.count >= 8, rng.chance(0.9) else { return }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(b[i]) << (8 * UInt64(i)) }
        n = UInt64(bitPattern: Int64(bitPattern: n) &+ Int64(delta))
        for i in 0..<8 { b[i] = UInt8((n >> (8 * UInt64(i))) & 0xFF) }
    }

    /// Replaces header bytes `r` by `new`, keeping the length field in step.
    mutating func replace(_ b: inout [UInt8], _ r: Range<Int>, with new: [UInt8]) {
        b.replaceSubrange(r, with: new)
        adjustLength(&b, by: new.count - r.count)
    }

    /// Tokens of the first header: runs of digits (numbers) or quoted strings (contents only).
    func tokens(_ b: [UInt8], in h: Range<Int>, strings: Bool) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = h.lowerBound
        while i < h.upperBound {
            if strings, b[i] == UInt8(ascii: "\"") || (anywhere && b[i] == UInt8(ascii: "'")) {
                let quote = b[i]
                var j = i + 1
                while j < h.upperBound, b[j] != quote { j += b[j] == UInt8(ascii: "\\") ? 2 : 1 }
                if j <= h.upperBound { out.append(i + 1 ..< min(j, h.upperBound)) }
                i = j + 1
            } else if !strings, (0x30...0x39).contains(b[i]) || b[i] == UInt8(ascii: "-") {
                var j = i + 1
                while j < h.upperBound, (0x30...0x39).contains(b[j]) || b[j] == UInt8(ascii: ".") || b[j] == UInt8(ascii: "e") { j += 1 }
                out.append(i ..< j)
                i = j
            } else {
                i += 1
            }
        }
        return out
    }

    mutating func mutateOnce(_ input: [UInt8]) -> [UInt8] {
        var b = input
        let h = anywhere ? 0 ..< b.count : headerRange(b)
        switch rng.below(16) {
        case 0 where !b.isEmpty:   // bit flip
            let i = rng.below(b.count); b[i] ^= 1 << UInt8(rng.below(8))
        case 1 where !b.isEmpty:   // an interesting byte
            b[rng.below(b.count)] = rng.pick(FrameMutator.interestingBytes)
        case 2:                    // insert bytes
            let k = 1 + rng.below(16)
            let new = (0..<k).map { _ in rng.chance(0.5) ? UInt8(truncatingIfNeeded: rng.next()) : rng.pick(FrameMutator.interestingBytes) }
            b.insert(contentsOf: new, at: rng.below(b.count + 1))
        case 3 where !b.isEmpty:   // delete a range
            let i = rng.below(b.count); let k = 1 + rng.below(min(32, b.count - i))
            b.removeSubrange(i ..< i + k)
        case 4 where b.count >= 2: // duplicate a range elsewhere
            let i = rng.below(b.count); let k = 1 + rng.below(min(64, b.count - i))
            b.insert(contentsOf: Array(b[i ..< i + k]), at: rng.below(b.count + 1))
        case 5 where !b.isEmpty:   // truncate
            b.removeSubrange(rng.below(b.count)...)
        case 6:                    // header length field
            var n: UInt64 = rng.pick(FrameMutator.lengths)
            if let h, rng.chance(0.5) { n = UInt64(max(0, h.count + rng.below(17) - 8)) }
            var bytes = [UInt8](repeating: 0, count: 8)
            for i in 0..<8 { bytes[i] = UInt8((n >> (8 * UInt64(i))) & 0xFF) }
            if b.count >= 8 { b.replaceSubrange(0..<8, with: bytes) } else { b = bytes + b }
        case 7, 8:                 // a number in the header
            guard let h else { return b }
            let t = tokens(b, in: h, strings: false)
            guard !t.isEmpty else { return b }
            replace(&b, rng.pick(t), with: Array(rng.pick(FrameMutator.interestingNumbers).utf8))
        case 9, 10:                // a string in the header
            guard let h else { return b }
            let t = tokens(b, in: h, strings: true)
            guard !t.isEmpty else { return b }
            let new: [UInt8] = rng.chance(0.2) ? rng.pick(FrameMutator.invalidUTF8) : Array(rng.pick(FrameMutator.interestingStrings).utf8)
            replace(&b, rng.pick(t), with: new)
        case 11:                   // a JSON token into the header
            guard let h else { return b }
            let tok = rng.pick(["{", "}", "[", "]", ",", ":", "\"", "null", "true", "[[[[[[[[", "\"x\":{}", "\"__metadata__\":{},",
                                "\"__metadata__\":{\"kind\":\"batch\"},", "\"a\":1,", " ", "\t", "\u{0}"])
            let at = h.lowerBound + rng.below(h.count + 1)
            replace(&b, at ..< at, with: Array(tok.utf8))
        case 12:                   // duplicate one "name":{...} entry (a repeated key) at the end of the header
            guard let h, h.count >= 2 else { return b }
            var entries: [Range<Int>] = []
            var i = h.lowerBound + 1
            while i < h.upperBound {
                if b[i] == UInt8(ascii: "\""), let close = b[(i + 1) ..< h.upperBound].firstIndex(of: UInt8(ascii: "\"")),
                   close + 2 < h.upperBound, b[close + 1] == UInt8(ascii: ":"), b[close + 2] == UInt8(ascii: "{"),
                   let end = b[(close + 2) ..< h.upperBound].firstIndex(of: UInt8(ascii: "}")) {
                    entries.append(i ..< end + 1); i = end + 1
                } else { i += 1 }
            }
            guard let e = entries.isEmpty ? nil : rng.pick(entries),
                  let last = b[h].lastIndex(of: UInt8(ascii: "}")) else { return b }
            replace(&b, last ..< last, with: [UInt8(ascii: ",")] + Array(b[e]))
        case 13:                   // deep nesting in the header
            guard let h else { return b }
            let d = rng.pick([63, 64, 65, 200, 5000])
            let open = rng.chance(0.5) ? "[" : "{\"a\":"
            let nest = String(repeating: open, count: d) + "1" + String(repeating: open == "[" ? "]" : "}", count: d)
            let at = h.lowerBound + rng.below(h.count + 1)
            replace(&b, at ..< at, with: Array(nest.utf8))
        case 14:                   // splice: a prefix of this, a suffix of another input
            let other = rng.pick(corpus)
            let cut = rng.below(b.count + 1), from = rng.below(other.count + 1)
            b = Array(b[..<cut]) + Array(other[from...])
        default:                   // append another input (a multi-frame stream)
            b += rng.pick(corpus)
        }
        return b
    }
}

/// A scratch file the reader reads from; after a trap it holds the input that caused it.
final class FuzzInputFile {
    let path: String
    let fd: Int32
    init() {
        path = temporaryDirectory().appendingPathComponent("fuzz-input.st").path
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0)
    }
    deinit { close(fd) }

    /// Writes `bytes` as the whole file and rewinds.
    func set(_ bytes: [UInt8]) {
        _ = ftruncate(fd, 0)
        var done = 0
        bytes.withUnsafeBytes { buf in
            while done < buf.count {
                let r = pwrite(fd, buf.baseAddress! + done, buf.count - done, off_t(done))
                if r <= 0 { break }
                done += r
            }
        }
        _ = lseek(fd, 0, SEEK_SET)
    }
}

final class FuzzTests: XCTestCase {
    // MARK: - Seeds

    static func dataFrames() -> [Frame] {
        var frames: [Frame] = []
        var a = Frame(metadata: ["kind": "batch", "note": "seed"])
        a["x"] = Tensor((0..<8).map { Float($0) / 4 - 1 }, shape: [4, 2])
        a["y"] = Tensor([Int64(0), 1, 2, 1], shape: [4])
        frames.append(a)
        var b = Frame(metadata: ["kind": "batch"])
        b["x"] = Tensor((0..<32).map { Float($0) / 16 - 1 }, shape: [2, 1, 4, 4])
        b["t"] = Tensor([Int64(3), 999], shape: [2])
        b["y"] = Tensor([Int32(1), 0], shape: [2])
        frames.append(b)
        var c = Frame(metadata: [:])
        c["x"] = Tensor((0..<6).map { Double($0) }, shape: [3, 2])
        c["u"] = Tensor([UInt8](repeating: 7, count: 3), shape: [3])
        c["s"] = Tensor([Float(1)], shape: [])
        c["e"] = Tensor([Float](), shape: [0, 5])
        frames.append(c)
        var z = Frame(metadata: ["kind": "batch"])
        z["x"] = Tensor([Float](), shape: [(1 << 40) - 1, 0])
        frames.append(z)
        if let s = try? Schedule.make(.linear, T: 8) { frames.append(s.frame()) }
        return frames
    }

    /// A small conditional MLP model, an unconditional one, and a classifier, made by `train`.
    static func modelFiles() throws -> [[UInt8]] {
        let dir = temporaryDirectory()
        var d = Frame(metadata: ["kind": "batch"])
        d["x"] = Tensor((0..<64).map { Float(sin(Double($0))) }, shape: [32, 2])
        d["y"] = Tensor((0..<32).map { Int64($0 % 3) }, shape: [32])
        var u = Frame(metadata: ["kind": "batch"])
        u["x"] = d["x"]
        let data = try encode([d]), udata = try encode([u])
        var out: [[UInt8]] = []
        let runs: [([String], Data)] = [(["--steps", "2", "--width", "8", "--depth", "1", "--temb-dim", "4"], data),
                                        (["--steps", "2", "--width", "4", "--depth", "1", "--temb-dim", "2"], udata),
                                        (["--steps", "2", "--classifier", "--width", "4"], data)]
        for (k, (args, input)) in runs.enumerated() {
            let path = dir.appendingPathComponent("m\(k).st").path
            let r = try runTool("train", args + ["--quiet", "-o", path], stdin: input)
            guard r.status == 0 else { throw DDPMError("train for a fuzz seed failed: \(r.stderr)") }
            out.append(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        }
        return out
    }

    // MARK: - One execution

    /// Reads `bytes` as a stream and checks every invariant; returns the outcome class.
    /// `models`: architecture metadata of the seed models, whose frames may be loaded in-process.
    static func execute(_ bytes: [UInt8], file: FuzzInputFile, safeArchitectures: [[String: String]]) -> String {
        file.set(bytes)
        let reader = FrameReader(fd: file.fd, name: "fuzz")
        var frames: [Frame] = []
        do {
            while frames.count < 64, let f = try reader.next() { frames.append(f) }
        } catch let e as DDPMError {
            checkMessage(e.message, bytes)
            return FuzzTally.errorClass(e.message)
        } catch {
            XCTFail("FrameReader threw a non-DDPMError \(error) for input \(describe(bytes))")
            return "foreign error"
        }
        var outcome = "ok: \(frames.count) frame(s)"
        for (k, f) in frames.enumerated() {
            checkFrame(f, bytes)
            checkBatches(f, index: k + 1, bytes)
            if ["model", "checkpoint", "classifier"].contains(f.kind ?? "") {
                let arch = ModelFile.architecture(from: f.metadata)
                guard safeArchitectures.contains(arch) else { outcome += ", model with changed arch (not loaded)"; continue }
                do {
                    _ = try ModelFile.load(frame: f)
                    outcome += ", model loads"
                } catch let e as DDPMError {
                    checkMessage(e.message, bytes)
                    outcome += ", model " + FuzzTally.errorClass(e.message)
                } catch {
                    XCTFail("ModelFile.load threw a non-DDPMError \(error) for input \(describe(bytes))")
                }
            }
        }
        return outcome
    }

    static func describe(_ bytes: [UInt8]) -> String {
        "(\(bytes.count) bytes, base64 \(Data(bytes.prefix(4096)).base64EncodedString()))"
    }

    static func hasControl(_ s: String, allowNewline: Bool = false) -> Bool {
        s.unicodeScalars.contains { $0.needsTerminalEscape && !(allowNewline && $0 == "\n") }
    }

    static func checkMessage(_ m: String, _ bytes: [UInt8]) {
        if m.isEmpty || hasControl(m) || m.count > DDPMError.maxLength {
            XCTFail("error message not one short line: \(m.debugDescription) for input \(describe(bytes))")
        }
    }

    /// A frame read back must write and read back identically, and print without control characters.
    static func checkFrame(_ f: Frame, _ bytes: [UInt8]) {
        let text = InfoText.describe(f, number: 1)
        if hasControl(text, allowNewline: true) { XCTFail("tensor info text holds control characters for input \(describe(bytes))") }
        for name in f.names + f.metadata.keys.filter({ $0 != "kind" }) + f.metadata.values where !name.isEmpty && !text.contains(name.escapedForTerminal) {
            XCTFail("tensor info does not show '\(name.escapedForTerminal)' whole for input \(describe(bytes))")
        }
        let header = Safetensors.header(for: f)
        do {
            let (meta, entries, length) = try Safetensors.parseHeader(header)
            guard meta == f.metadata, entries.map(\.name) == f.names,
                  length == f.tensors.reduce(0, { $0 + $1.tensor.byteCount }) else {
                return XCTFail("header round trip changed the frame for input \(describe(bytes))")
            }
            for (e, (_, t)) in zip(entries, f.tensors) where e.shape != t.shape || e.dtype != t.dtype {
                XCTFail("header round trip changed tensor '\(e.name)' for input \(describe(bytes))")
            }
        } catch {
            XCTFail("a frame read back cannot be parsed again (\(error)) for input \(describe(bytes))")
        }
    }

    /// Batch accepts only x of positive sample sizes and finite values, labels within the rules.
    static func checkBatches(_ f: Frame, index: Int, _ bytes: [UInt8]) {
        var conditional = BatchRules(sampleShape: nil, timesteps: nil, T: 1000, classes: 3)
        conditional.allowNull = true
        let fixed = BatchRules(sampleShape: [2], timesteps: true, T: 1000)
        let zero = BatchRules(sampleShape: [0])
        for rules in [BatchRules(), conditional, fixed, zero] {
            do {
                let b = try Batch(frame: f, index: index, rules: rules)
                guard b.sampleSize > 0, b.x.count == b.count * b.sampleSize, b.x.allSatisfy(\.isFinite) else {
                    return XCTFail("Batch accepted x of shape \(f["x"]?.shape ?? []) with \(b.x.count) values for input \(describe(bytes))")
                }
                if let T = rules.T, let t = b.t, t.contains(where: { $0 < 0 || $0 >= T }) { XCTFail("Batch accepted t outside 0 ..< \(T)") }
                if let k = rules.classes, let y = b.y, y.contains(where: { $0 < 0 || $0 > k }) { XCTFail("Batch accepted a label outside 0 ... \(k)") }
                if let y = b.y, y.contains(where: { $0 < 0 || $0 > Int(Int32.max) }) { XCTFail("Batch accepted a label outside Int32") }
            } catch let e as DDPMError {
                checkMessage(e.message, bytes)
            } catch {
                XCTFail("Batch threw a non-DDPMError \(error)")
            }
        }
    }

    // MARK: - Targets

    /// Mutates `corpus` for the budget, executing every input; returns the tally.
    func fuzz(_ title: String, corpus: [[UInt8]], seedOffset: UInt64, safeArchitectures: [[String: String]] = [],
              anywhere: Bool = false, seconds: Double? = nil,
              execute: ((_ input: [UInt8], _ file: FuzzInputFile) -> String)? = nil) -> FuzzTally {
        let budget = FuzzBudget.current
        let limit = seconds ?? budget.seconds
        let file = FuzzInputFile()
        let run = execute ?? { FuzzTests.execute($0, file: $1, safeArchitectures: safeArchitectures) }
        print("\(title): seed \(budget.seed), budget \(limit) s / \(budget.iterations) executions; FUZZ_INPUT=\(file.path)")
        var mutator = FrameMutator(rng: FuzzRandom(seed: budget.seed &+ seedOffset), corpus: corpus, anywhere: anywhere)
        var tally = FuzzTally()
        let start = Date()
        // The seeds themselves first.
        for c in corpus { tally.add(run(c, file)) }
        while tally.executions < budget.iterations, Date().timeIntervalSince(start) < limit {
            for _ in 0..<64 {
                var input = mutator.rng.pick(corpus)
                input = mutator.mutate(input)
                // Sometimes keep mutating a mutant: deeper edits of one input.
                if mutator.rng.chance(0.25) { input = mutator.mutate(input) }
                tally.add(run(input, file))
            }
        }
        print(tally.report(title, seconds: Date().timeIntervalSince(start)))
        return tally
    }

    func testFuzzFrameReader() throws {
        if let replay = ProcessInfo.processInfo.environment["DDPM_FUZZ_REPLAY"] {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: replay)))
            print("replay \(replay): " + FuzzTests.execute(bytes, file: FuzzInputFile(), safeArchitectures: []))
            return
        }
        let frames = FuzzTests.dataFrames()
        var corpus = try frames.map { Array(try encode([$0])) }
        corpus.append(Array(try encode(frames)))   // a multi-frame stream
        for c in corpus.prefix(frames.count) {
            XCTAssertTrue(FuzzTests.execute(c, file: FuzzInputFile(), safeArchitectures: []).hasPrefix("ok"), "a seed must read")
        }
        let tally = fuzz("fuzz frame reader", corpus: corpus, seedOffset: 0)
        XCTAssertGreaterThan(tally.executions, corpus.count)
        XCTAssertGreaterThan(tally.counts.keys.filter { $0.hasPrefix("error") }.count, 10, "the mutations reach many checks")
    }

    func testFuzzModelFileLoader() throws {
        let models = try FuzzTests.modelFiles()
        let archs = try models.map { ModelFile.architecture(from: try decode(Data($0))[0].metadata) }
        for m in models {
            XCTAssertTrue(FuzzTests.execute(m, file: FuzzInputFile(), safeArchitectures: archs).contains("model loads"), "a seed model must load")
        }
        let tally = fuzz("fuzz model-file loader", corpus: models, seedOffset: 1, safeArchitectures: archs,
                         seconds: FuzzBudget.current.seconds * 2 / 3)
        XCTAssertGreaterThan(tally.counts.keys.filter { $0.contains("model error") }.count, 3, "mutations reach the loader's checks")
    }

    /// The importers of `tensor from-npy` and `from-idx` (gzip included): a tensor or a DDPMError,
    /// and a tensor read is one the stream format can hold.
    func testFuzzImporters() throws {
        var seeds: [[UInt8]] = [
            NPY.serialize(Tensor((0..<12).map { Float($0) }, shape: [3, 4])),
            NPY.serialize(Tensor([Int64(1), -2, 3], shape: [3])),
            NPY.serialize(Tensor([UInt8](repeating: 9, count: 8), shape: [2, 2, 2])),
            NPY.serialize(Tensor([Double(1.5)], shape: [])),
        ]
        // A Fortran-order array (the writer makes C order only).
        var fortran = NPY.serialize(Tensor((0..<6).map { Int32($0) }, shape: [2, 3]))
        if let r = fortran.firstRange(of: Array("'fortran_order': False".utf8)) {
            fortran.replaceSubrange(r, with: Array("'fortran_order': True ".utf8))
            seeds.append(fortran)
        }
        let idx = IDX.serialize(IDXArray(type: .u8, dims: [2, 2, 3], bytes: [UInt8](repeating: 7, count: 12)))
        seeds.append(idx)
        seeds.append(try Gzip.compress(idx))
        seeds.append(IDX.serialize(IDXArray(type: .u8, dims: [4], bytes: [0, 1, 2, 3])))
        let tally = fuzz("fuzz importers (.npy, IDX, gzip)", corpus: seeds, seedOffset: 4, anywhere: true,
                         seconds: FuzzBudget.current.seconds / 3) { input, file in
            file.set(input)   // kept for a crash
            let isNPY = input.starts(with: [0x93] + Array("NUMPY".utf8))
            do {
                if isNPY {
                    let t = try NPY.parse(input, name: "fuzz.npy")
                    if t.shape.contains(where: { $0 >= 1 << 40 }) || t.count >= 1 << 40 {
                        XCTFail(".npy gave shape \(t.shape), which no frame can hold; input \(FuzzTests.describe(input))")
                    }
                    var f = Frame()
                    f["x"] = t
                    _ = try Safetensors.parseHeader(Safetensors.header(for: f))
                    return "npy ok"
                }
                let a = try IDX.parse(input, name: "fuzz.idx")
                if a.bytes.count != a.count * a.type.size { XCTFail("IDX \(a.dims) with \(a.bytes.count) bytes") }
                return "idx ok"
            } catch let e as DDPMError {
                FuzzTests.checkMessage(e.message, input)
                return (isNPY ? "npy " : "idx ") + FuzzTally.errorClass(e.message)
            } catch {
                XCTFail("importer threw a non-DDPMError \(error)")
                return "foreign error"
            }
        }
        XCTAssertGreaterThan(tally.counts.keys.filter { $0.contains("error") }.count, 5)
    }

    /// Model files with mutated metadata (arch.width = 2^31, classes huge, ...) or bytes, loaded by
    /// `denoise --model` in a child process bounded in time and memory. The bounds of model
    /// metadata belong to the NN code: a crash, a hang or an unbounded allocation is reported here
    /// as "known open" and does not fail the test; a message that is not one line does.
    func testModelFileMutationsOutOfProcess() throws {
        let budget = FuzzBudget.current
        let models = try FuzzTests.modelFiles()
        let dir = temporaryDirectory()
        let path = dir.appendingPathComponent("mutant.st").path
        var rng = FuzzRandom(seed: budget.seed &+ 2)
        var mutator = FrameMutator(rng: FuzzRandom(seed: budget.seed &+ 3), corpus: models)
        var tally = FuzzTally()
        var open: [String] = []
        let values = ["0", "1", "-1", "3", "1000000000", "2147483648", "4611686018427387904", "9223372036854775807",
                      "99999999999999999999", "1e9", "nan", "", "2,2", "0,0", "1099511627776,1099511627776", "unet", "mlp", "true"]
        let start = Date()
        for run in 0..<budget.processRuns {
            guard Date().timeIntervalSince(start) < max(budget.seconds, 10) else { break }
            let seed = models[run % 2]   // the two denoising models
            var frame = try decode(Data(seed))[0]
            var what: String
            if rng.chance(0.75) {
                let keys = frame.metadata.keys.sorted()
                let archKeys = keys.filter { $0.hasPrefix(ModelFile.archPrefix) }
                let key = rng.chance(0.7) ? rng.pick(archKeys) : rng.pick(keys)
                let value = rng.pick(values)
                frame.metadata[key] = value
                what = "\(key)=\(value)"
            } else {
                what = "bytes"
            }
            var bytes = Array(try encode([frame]))
            if what == "bytes" || rng.chance(0.1) { bytes = mutator.mutate(bytes); what += " + byte mutations" }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let r = try runToolGuarded("denoise", ["--model", path, "-n", "2", "--steps", "2", "--quiet"], timeout: 20, memoryLimit: 2 << 30)
            let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false)
            if r.abnormal {
                let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
                open.append("\(what): \(r.outcome) \(first.prefix(120))")
                tally.add("known open: \(r.outcome)")
            } else if r.status == 0 {
                tally.add("ok (exit 0)")
            } else {
                XCTAssertTrue(lines.count == 2 && lines[0].hasPrefix("denoise: ") && lines[1].isEmpty,
                              "\(what): not a one-line error: \(r.stderr.debugDescription)")
                tally.add(FuzzTally.errorClass(String(lines[0].dropFirst("denoise: ".count))))
            }
        }
        print(tally.report("fuzz model files through denoise --model (child processes)", seconds: Date().timeIntervalSince(start)))
        for o in open { print("known open (model metadata bounds, NN): \(o)") }
        XCTAssertGreaterThan(tally.executions, 0)
    }
}
