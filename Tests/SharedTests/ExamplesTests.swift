// examples/Makefile plans the expected chain (make -n), rebuilds only what a parameter
// change touches, and the helpers behind the sample-quality figures (classify, tensor reshape)
// compute what they claim. (`evaluate`, which makes the figures, is tested in MetricsTests.)
import Foundation
import XCTest
@testable import Shared

private let examplesDirectory = repositoryRoot.appendingPathComponent("examples")

/// Runs an executable found on PATH (make) in `directory`.
private func runProgram(_ name: String, _ args: [String], in directory: URL) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [name] + args
    p.currentDirectoryURL = directory
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: o, stderr: String(decoding: e, as: UTF8.self))
}

final class ExamplesTests: XCTestCase {
    /// `make -n` in examples/ with OUT in a temporary directory and the built tools.
    func makePlan(_ out: URL, _ extra: [String] = []) throws -> (status: Int32, lines: [String], stderr: String) {
        let r = try runProgram("make", ["-n", "OUT=\(out.path)", "BIN=\(productsDirectory.path)"] + extra, in: examplesDirectory)
        // one line per command: join the recipe's continuation lines
        let text = String(decoding: r.stdout, as: UTF8.self).replacingOccurrences(of: "\\\n", with: " ")
        return (r.status, text.split(separator: "\n").map(String.init), r.stderr)
    }

    /// Index of the first plan line containing `needle`, failing the test when there is none.
    func position(_ lines: [String], _ needle: String, file: StaticString = #filePath, line: UInt = #line) -> Int {
        guard let i = lines.firstIndex(where: { $0.contains(needle) }) else {
            XCTFail("the plan has no step '\(needle)':\n" + lines.joined(separator: "\n"), file: file, line: line)
            return -1
        }
        return i
    }

    func testDefaultPlanIsTheChainDataScheduleModelSamplesGrid() throws {
        let out = temporaryDirectory()
        let plan = try makePlan(out)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        let data = position(plan.lines, "tensor from-idx ../data/mnist-10k/train-images")
        let schedule = position(plan.lines, "schedule --linear -T 1000 >")
        let train = position(plan.lines, "train --data \(out.path)/train.st --schedule \(out.path)/schedule.st")
        let samples = position(plan.lines, "denoise --model \(out.path)/model.st --sampler ddim --steps 50")
        let grid = position(plan.lines, "tensor to-png --grid 10x10 -o \(out.path)/grid-ddim50-w3.png")
        XCTAssertTrue(data < train && schedule < train && train < samples && samples < grid, plan.lines.joined(separator: "\n"))
        XCTAssertTrue(plan.lines.contains { $0.contains("--label $y --guidance 3") }, "samples are per label with guidance W = 3")
        XCTAssertTrue(plan.lines.contains { $0.contains("--p-uncond 0.1") }, "conditioning dropout 0.1")
        // Parameters were written as stamp files; intermediate samples are kept (no 'rm').
        for p in ["data", "schedule", "train", "sample"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("params/\(p)").path), p)
        }
        XCTAssertFalse(plan.lines.contains { $0.hasPrefix("rm ") }, "make must not delete the samples")
    }

    /// Creates every file of the default chain, each newer than what it depends on.
    func makeUpToDate(_ out: URL) throws {
        _ = try makePlan(out)  // writes the parameter stamps
        let fm = FileManager.default
        let now = Date()
        let chain: [(String, Double)] = [
            ("params/data", -600), ("params/schedule", -600), ("params/train", -600), ("params/sample", -600),
            ("params/classifier", -600),
            ("train.st", -500), ("schedule.st", -400), ("model.st", -300), ("samples-ddim50-w3.st", -200),
            ("grid-ddim50-w3.png", -100)]
        for (name, age) in chain {
            let path = out.appendingPathComponent(name).path
            if !fm.fileExists(atPath: path) { XCTAssertTrue(fm.createFile(atPath: path, contents: Data("x".utf8))) }
            try fm.setAttributes([.modificationDate: now.addingTimeInterval(age)], ofItemAtPath: path)
        }
    }

    func testAParameterChangeRerunsOnlyWhatDependsOnIt() throws {
        // Up to date: nothing to do.
        var out = temporaryDirectory()
        try makeUpToDate(out)
        var plan = try makePlan(out)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertFalse(plan.lines.contains { $0.contains("/release/") }, "an up-to-date tree plans no tool:\n" + plan.lines.joined(separator: "\n"))

        // Sampling steps are in the file name: only sampling and the grid.
        plan = try makePlan(out, ["SAMPLE_STEPS=100"])
        XCTAssertTrue(plan.lines.contains { $0.contains("denoise --model") && $0.contains("--steps 100") })
        XCTAssertTrue(plan.lines.contains { $0.contains("grid-ddim100-w3.png") })
        XCTAssertFalse(plan.lines.contains { $0.contains("/train ") || $0.contains("/schedule ") || $0.contains("from-idx") },
                       plan.lines.joined(separator: "\n"))

        // Training steps: retrain and resample, but keep the data and the schedule.
        out = temporaryDirectory()
        try makeUpToDate(out)
        plan = try makePlan(out, ["STEPS=2000"])
        XCTAssertTrue(plan.lines.contains { $0.contains("/train --data") && $0.contains("--steps 2000") })
        XCTAssertTrue(plan.lines.contains { $0.contains("denoise --model") })
        XCTAssertFalse(plan.lines.contains { $0.contains("/schedule ") || $0.contains("from-idx") }, plan.lines.joined(separator: "\n"))

        // Schedule: new schedule, retrain, resample; the data stay.
        out = temporaryDirectory()
        try makeUpToDate(out)
        plan = try makePlan(out, ["SCHEDULE=cosine"])
        let s = position(plan.lines, "schedule --cosine -T 1000")
        let t = position(plan.lines, "/train --data")
        let d = position(plan.lines, "denoise --model")
        XCTAssertTrue(s < t && t < d)
        XCTAssertFalse(plan.lines.contains { $0.contains("from-idx") })

        // Reading the Makefile again with the same value leaves the stamp's time alone.
        let stamp = out.appendingPathComponent("params/schedule").path
        let before = try FileManager.default.attributesOfItem(atPath: stamp)[.modificationDate] as! Date
        _ = try makePlan(out, ["SCHEDULE=cosine"])
        let after = try FileManager.default.attributesOfItem(atPath: stamp)[.modificationDate] as! Date
        XCTAssertEqual(before, after, "an unchanged parameter must not touch its stamp")
    }

    func testMnistRecipePlansClassifierFiguresAndEveryGuidanceScale() throws {
        let out = temporaryDirectory()
        var plan = try makePlan(out, ["mnist"])
        XCTAssertNotEqual(plan.status, 0, "make mnist without MNIST=DIR must fail")
        XCTAssertTrue(plan.stderr.contains("MNIST=DIR") || plan.lines.contains { $0.contains("MNIST=DIR") })

        let mnist = temporaryDirectory()
        plan = try makePlan(out, ["mnist", "MNIST=\(mnist.path)"])
        XCTAssertEqual(plan.status, 0, plan.stderr)
        let m = out.appendingPathComponent("mnist").path
        let clf = position(plan.lines, "--classifier --steps")
        let train = position(plan.lines, "/train --data \(m)/train.st")
        let figures = position(plan.lines, "/evaluate --reference \(m)/classified-test.st --floor \(m)/n10000/classified-floor.st")
        let floor = position(plan.lines, "from-idx \(mnist.path)/train-images-idx3-ubyte* \(mnist.path)/train-labels-idx1-ubyte* --limit 10000")
        XCTAssertTrue(clf < figures && train < figures && floor < figures)
        // The recipe's model predicts v with Min-SNR-5 weighting (docs/RESULTS.md, section 4); MNIST_TARGET changes that.
        XCTAssertTrue(plan.lines.contains { $0.contains("/train --data \(m)/train.st") && $0.contains("--prediction v --weighting min-snr --snr-gamma 5 --batch 32") })
        let eps = try makePlan(temporaryDirectory(), ["mnist", "MNIST=\(mnist.path)", "MNIST_TARGET="])
        XCTAssertEqual(eps.status, 0, eps.stderr)
        XCTAssertFalse(eps.lines.contains { $0.contains("/train --data") && $0.contains("--prediction") }, eps.stderr)
        // The figures come from N = 10,000 samples per set by default (N/10 per label), the grids from 10 per label.
        XCTAssertTrue(plan.lines.contains { $0.contains("--label $y --guidance 2 -n $(( 10000 / 10 ))") })
        XCTAssertTrue(plan.lines.contains { $0.contains("--steps 6000") && $0.contains("--batch 32") && $0.contains("--p-uncond 0.1") })
        for w in ["1", "2", "3"] {
            XCTAssertTrue(plan.lines.contains { $0.contains("--sampler dpmpp-2m --steps 15 --spacing karras") && $0.contains("--label $y --guidance \(w) ") }, "W = \(w)")
            _ = position(plan.lines, "grid-dpmpp15_karras-w\(w).png")
            _ = position(plan.lines, "n10000/classified-eval-dpmpp15_karras-w\(w).st")
        }
        // A smaller run: N=100, ten per label, the floor the first 100 training digits, in n100/.
        plan = try makePlan(temporaryDirectory(), ["mnist", "MNIST=\(mnist.path)", "N=100"])
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.lines.contains { $0.contains("--guidance 3 -n $(( 100 / 10 ))") })
        XCTAssertTrue(plan.lines.contains { $0.contains("--limit 100 >") && $0.contains("/n100/floor.st") })
        // The sampler table: every sampler at W = 1 and N_SAMPLERS = 1000, its own figures file.
        plan = try makePlan(out, ["mnist-samplers", "MNIST=\(mnist.path)"])
        XCTAssertEqual(plan.status, 0, plan.stderr)
        for flags in ["--sampler dpmpp-2m --steps 10 --spacing karras ", "--sampler heun --steps 20 --spacing karras ",
                      "--sampler ddim --steps 50 ", "--sampler ddpm --steps 1000 "] {
            XCTAssertTrue(plan.lines.contains { $0.contains(flags) && $0.contains("--label $y --guidance 1 -n $(( 1000 / 10 ))") }, flags)
        }
        _ = position(plan.lines, "\(m)/n1000/samplers.txt")
        // An unknown sampler key in a set's name is an error naming it.
        let bad = try makePlan(out, ["mnist-samplers", "MNIST=\(mnist.path)", "SAMPLER_SETS=fast10-w1"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("unknown sampler 'fast'"), bad.stderr)
    }

    /// classify runs the image classifier (the U-Net encoder train --classifier picks for
    /// images) too: its features are the pooled encoder output, the head's input, so the logits
    /// are exactly head(features) and pred their argmax. (The full MNIST recipe found that
    /// classify accepted only the MLP classifier.)
    func testClassifyImageClassifier() throws {
        let dir = temporaryDirectory()
        // Two labelled kinds of 8x8 images: bright top half vs bright bottom half, plus noise.
        var rng = RandomStream(seed: 6, purpose: .toy, index: 2)
        let n = 64
        var x = [Float](), y = [Int64]()
        for i in 0..<n {
            let c = i % 2
            y.append(Int64(c))
            for r in 0..<8 { for _ in 0..<8 { x.append(((r < 4) == (c == 0) ? 0.8 : -0.8) + 0.1 * Float(rng.nextNormal())) } }
        }
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor(x, shape: [n, 1, 8, 8])
        f["y"] = Tensor(y, shape: [n])
        let data = dir.appendingPathComponent("img.st").path
        try Frame.save([f], path: data)
        let clf = dir.appendingPathComponent("clf-img.st").path
        let t = try runTool("train", ["--data", data, "--classifier", "--channels", "8", "--mults", "1,2", "--groups", "4",
                                      "--steps", "40", "--batch", "32", "--quiet", "-o", clf])
        XCTAssertEqual(t.status, 0, t.stderr)
        let r = try runTool("classify", ["--classifier", clf], stdinFile: data)
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try decode(r.stdout)
        let logits = try out[0].require("logits").floats, pred = try out[0].require("pred").integers()
        let feats = try out[0].require("features")
        XCTAssertEqual(feats.shape, [n, 16])
        let net = try XCTUnwrap(ModelFile.load(path: clf).network as? NoiseAwareUNetClassifier)
        let W = Array(net.head.weight.value), b = Array(net.head.bias.value), fs = feats.floats
        for i in 0..<n {
            for k in 0..<2 {
                var z = b[k]
                for j in 0..<16 { z += W[k * 16 + j] * fs[i * 16 + j] }
                XCTAssertEqual(logits[i * 2 + k], z, accuracy: 1e-4 * max(1, abs(z)))
            }
            XCTAssertEqual(pred[i], logits[2 * i + 1] > logits[2 * i] ? 1 : 0)
        }
    }

    /// classify: pred is the argmax of the logits, features are the last hidden layer, and the
    /// accuracy line counts the hits; reshape round-trips and refuses a size mismatch.
    func testClassifyAndReshape() throws {
        let dir = temporaryDirectory()
        // Two well-separated labelled blobs in 2-D, a short classifier run.
        var rng = RandomStream(seed: 5, purpose: .toy, index: 1)
        let n = 512
        var x = [Float](), y = [Int64]()
        for i in 0..<n { let c = i % 2; y.append(Int64(c)); x += [Float(c == 0 ? -1 : 1) + 0.1 * Float(rng.nextNormal()), 0.1 * Float(rng.nextNormal())] }
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor(x, shape: [n, 2])
        f["y"] = Tensor(y, shape: [n])
        let data = dir.appendingPathComponent("d.st").path
        try Frame.save([f], path: data)
        let clf = dir.appendingPathComponent("clf.st").path
        let t = try runTool("train", ["--data", data, "--classifier", "--steps", "150", "--batch", "64", "--width", "32", "--quiet", "-o", clf])
        XCTAssertEqual(t.status, 0, t.stderr)
        let r = try runTool("classify", ["--classifier", clf], stdinFile: data)
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try decode(r.stdout)
        XCTAssertEqual(out.count, 1)
        let logits = try out[0].require("logits"), pred = try out[0].require("pred").integers()
        let feats = try out[0].require("features")
        XCTAssertEqual(logits.shape, [n, 2]); XCTAssertEqual(feats.shape, [n, 32])
        let l = logits.floats
        for i in 0..<n { XCTAssertEqual(pred[i], l[2 * i + 1] > l[2 * i] ? 1 : 0) }
        let hits = zip(pred, y).filter { $0 == $1 }.count
        XCTAssertGreaterThan(hits, n * 95 / 100, "separated blobs at t = 0")
        XCTAssertTrue(r.stderr.contains("accuracy \(String(format: "%.4f", Double(hits) / Double(n))) (\(hits) of \(n))"), r.stderr)
        // Features really are the penultimate layer: the logits are an affine map of them.
        let loaded = try ModelFile.load(path: clf)
        let net = loaded.network as! NoiseAwareClassifier
        let direct = net.logitsAndFeatures(Array(x.prefix(8)), t: [Int](repeating: 0, count: 4))
        // (same weights, another batch size: equal up to float rounding of the GEMM paths)
        for (u, v) in zip(direct.features, feats.floats.prefix(4 * 32)) { XCTAssertEqual(u, v, accuracy: 1e-5) }
        for (u, v) in zip(direct.logits, l.prefix(8)) { XCTAssertEqual(u, v, accuracy: 1e-5) }
        // A non-classifier file is refused in one line.
        let bad = try runTool("classify", ["--classifier", data], stdinFile: data)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.hasPrefix("classify: "), bad.stderr)

        // reshape: [N,2] -> [N,1,1,2] -> [N,2] is the identity on the bytes; 3 elements refused.
        let there = try runTool("tensor", ["reshape", "--shape", "1,1,2"], stdinFile: data)
        XCTAssertEqual(try decode(there.stdout)[0].require("x").shape, [n, 1, 1, 2])
        let back = try runTool("tensor", ["reshape", "--shape", "2"], stdin: there.stdout)
        XCTAssertEqual(try decode(back.stdout)[0].require("x").floats, x)
        XCTAssertEqual(try decode(back.stdout)[0].require("y").integers(), y)
        let wrong = try runTool("tensor", ["reshape", "--shape", "3"], stdinFile: data)
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.stderr.contains("frame 1: 'x' has samples of shape [2]"), wrong.stderr)
    }
}
