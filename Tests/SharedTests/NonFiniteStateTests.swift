import XCTest
@testable import Shared

/// Nothing non-finite is ever written as a checkpoint or a model: a NaN injected into a
/// checkpoint's optimizer state or EMA is refused on --resume (the file names the tensor), a run
/// whose weights overflow stops with the last finite checkpoint named, and finite divergence is a
/// warning with the step.
final class NonFiniteStateTests: XCTestCase {
    func data(_ dir: URL) throws -> String {
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor(swissRoll(n: 512, seed: 3), shape: [512, 2])
        let path = dir.appendingPathComponent("roll.st").path
        try f.save(path: path)
        return path
    }

    /// A checkpoint of 20 steps, then a copy with `name`'s first element replaced by `value`.
    func poisoned(_ dir: URL, data: String, tensorPrefix: String, value: Float) throws -> String {
        let ck = dir.appendingPathComponent("ck.st").path
        let r = try runTool("train", ["--data", data, "--arch", "mlp", "--width", "16", "--depth", "2", "--steps", "20",
                                      "--batch", "32", "--checkpoint", ck, "--quiet", "-o", dir.appendingPathComponent("m.st").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        var frame = try Frame.load(path: ck)
        let name = frame.names.first { $0.hasPrefix(tensorPrefix) }!
        var t = frame[name]!
        var v = t.floats
        v[0] = value
        t = Tensor(v, shape: t.shape)
        frame[name] = t
        let bad = dir.appendingPathComponent("ck-\(tensorPrefix)bad.st").path
        try frame.save(path: bad)
        return bad
    }

    func testPoisonedCheckpointIsRefusedAndNothingIsWritten() throws {
        let dir = temporaryDirectory()
        let d = try data(dir)
        for (prefix, value) in [("adam.m.", Float.nan), ("adam.v.", Float.infinity), ("ema.", Float.nan), ("raw.", -Float.infinity)] {
            let bad = try poisoned(dir, data: d, tensorPrefix: prefix, value: value)
            let out = dir.appendingPathComponent("resumed-\(prefix).st").path
            let before = try Data(contentsOf: URL(fileURLWithPath: bad))
            let r = try runTool("train", ["--data", d, "--resume", bad, "--steps", "40", "--quiet", "-o", out, "--checkpoint", bad])
            XCTAssertEqual(r.status, 1, "\(prefix): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("non-finite") && r.stderr.contains(prefix), "\(prefix): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(prefix): a model was written")
            // The checkpoint given to --checkpoint is the poisoned one: it is left exactly as it was.
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: bad)), before, prefix)
        }
        // A model file with a NaN weight is refused by the samplers too.
        let model = try poisoned(dir, data: d, tensorPrefix: "ema.", value: .nan)
        var f = try Frame.load(path: model)
        f.kind = "model"
        let m = dir.appendingPathComponent("m-nan.st").path
        try f.save(path: m)
        let s = try runTool("denoise", ["--model", m, "-n", "2", "--steps", "2", "--quiet"])
        XCTAssertEqual(s.status, 1, s.stderr)
        XCTAssertTrue(s.stderr.contains("non-finite"), s.stderr)
    }

    func testOverflowingWeightsStopWithTheLastFiniteCheckpoint() throws {
        let dir = temporaryDirectory()
        let d = try data(dir)
        let ck = dir.appendingPathComponent("ck.st").path, out = dir.appendingPathComponent("m.st").path
        // lr 1e38: the first AdamW updates move the weights by ~1e38 and they overflow within a few steps.
        let r = try runTool("train", ["--data", d, "--arch", "mlp", "--width", "16", "--depth", "2", "--steps", "50", "--batch", "32",
                                      "--lr", "1e38", "--clip", "0", "--checkpoint", ck, "--every", "1", "--quiet", "-o", out])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // Whatever checkpoint is on disk is finite, and it is the one the message names.
        if FileManager.default.fileExists(atPath: ck) {
            let f = try Frame.load(path: ck)
            for (name, t) in f.tensors where t.dtype == .f32 {
                XCTAssertTrue(t.floats.allSatisfy { $0.isFinite }, "\(name) holds a non-finite value")
            }
            XCTAssertTrue(r.stderr.contains("(step \(f.metadata["step"]!)) is kept in \(ck)"), r.stderr)
        } else {
            XCTAssertTrue(r.stderr.contains("no checkpoint was written"), r.stderr)
        }
    }

    func testFiniteDivergenceIsAWarningWithTheStep() throws {
        let dir = temporaryDirectory()
        let d = try data(dir)
        // lr 1000 (measured: the step loss goes from 1.28 at step 1 to ~3.6e6 by step 49 and stays
        // finite): the warning comes at the first 50-step mean, with its step.
        let r = try runTool("train", ["--data", d, "--arch", "mlp", "--width", "16", "--depth", "2", "--steps", "100", "--batch", "32",
                                      "--lr", "1000", "--clip", "0", "--quiet", "-o", dir.appendingPathComponent("m.st").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("step 50: the mean loss") && r.stderr.contains("diverging"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        // A healthy run warns nothing.
        let ok = try runTool("train", ["--data", d, "--arch", "mlp", "--width", "16", "--depth", "2", "--steps", "300", "--batch", "32",
                                       "--quiet", "-o", dir.appendingPathComponent("m2.st").path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertEqual(ok.stderr, "")
    }
}
