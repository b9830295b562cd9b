// The denoise and guide executables: reproducibility, the predictor protocol,
// guidance as a filter, and one-line errors on bad input.
import Foundation
import XCTest
@testable import Shared

final class SamplingToolTests: XCTestCase {
    let gauss = "gaussian mu=0.5 sigma=0.3"

    func denoise(_ args: [String], stdin: Data? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> Data {
        let r = try runTool("denoise", args + ["--quiet"], stdin: stdin)
        XCTAssertEqual(r.status, 0, "denoise \(args): \(r.stderr)", file: file, line: line)
        return r.stdout
    }

    /// Asserts a failing run: status 1 and one line on stderr containing `expect`.
    func assertFails(_ tool: String, _ args: [String], stdin: Data? = nil, _ expect: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try runTool(tool, args, stdin: stdin)
        XCTAssertEqual(r.status, 1, "\(args) should fail; stderr: \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one line expected: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(expect), "'\(expect)' not in: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("\(tool): "), r.stderr, file: file, line: line)
    }

    func testBatchAndShardsDoNotChangeSamples() throws {
        let common = ["--analytic", gauss, "--shape", "3", "--steps", "20", "--sampler", "ddim", "--eta", "1", "--seed", "42"]
        let one = try xs(try denoise(common + ["-n", "10", "--batch", "10"]))
        let batched = try xs(try denoise(common + ["-n", "10", "--batch", "3"]))
        XCTAssertEqual(one, batched)
        let a = try xs(try denoise(common + ["-n", "4", "--offset", "0"]))
        let b = try xs(try denoise(common + ["-n", "6", "--offset", "4", "--batch", "4"]))
        XCTAssertEqual(a + b, one)
        XCTAssertEqual(one.count, 30)
        // Another seed gives other samples.
        XCTAssertNotEqual(try xs(try denoise(common.dropLast() + ["43", "-n", "10"])), one)
        // With the corrector (its own random stream) too.
        let corr = common + ["--corrector-steps", "1"]
        XCTAssertEqual(try xs(try denoise(corr + ["-n", "5", "--batch", "2"])), try xs(try denoise(corr + ["-n", "5"])))
    }

    func testPredictorProcessGivesTheInProcessSamples() throws {
        let common = ["--shape", "2", "-n", "6", "--steps", "25", "--seed", "9", "--variance", "learned"]
        let spec = "mixture mu=-1,1 sigma=0.2 weight=1,3 v=0.3"
        let inProcess = try xs(try denoise(common + ["--analytic", spec]))
        let out = try denoise(common + ["--predictor", "\(toolPath("guide")) --analytic '\(spec)'"])
        XCTAssertEqual(try xs(out), inProcess)
        let meta = try decode(out)[0].metadata
        XCTAssertEqual(meta["sampler"], "ddpm"); XCTAssertEqual(meta["steps"], "25"); XCTAssertEqual(meta["variance"], "learned")
        XCTAssertEqual(meta["seed"], "9"); XCTAssertEqual(meta["spacing"], "leading")
        XCTAssertTrue(meta["predictor"]!.contains("guide --analytic"))
    }

    func testGuidancePipelineMatchesInProcessGuidance() throws {
        let spec = "mixture mu=-1,1 sigma=0.3 null=0,1"
        let common = ["--shape", "2", "-n", "5", "--steps", "20", "--sampler", "ddim", "--label", "1"]
        let inProcess = try xs(try denoise(common + ["--analytic", spec, "--guidance", "2.5", "--guidance-rescale", "0.5"]))
        let g = toolPath("guide")
        let piped = try xs(try denoise(common + ["--predictor", "\(g) --analytic '\(spec)' --pair | \(g) --scale 2.5 --rescale 0.5"]))
        XCTAssertEqual(piped, inProcess)
        let served = try xs(try denoise(common + ["--predictor", "\(g) --analytic '\(spec)' --scale 2.5 --rescale 0.5"]))
        XCTAssertEqual(served, inProcess)
        let labelled = try decode(try denoise(common + ["--analytic", spec]))
        XCTAssertEqual(try labelled[0].require("y").integers(), [1, 1, 1, 1, 1])
    }

    func testGuideFilter() throws {
        var f = Frame(metadata: ["kind": "eps"])
        f["eps_cond"] = Tensor([1, 2, 3, 4] as [Float], shape: [2, 2])
        f["eps_uncond"] = Tensor([0, 0, 1, 1] as [Float], shape: [2, 2])
        f["t"] = Tensor([5, 5] as [Int64], shape: [2])
        let r = try runTool("guide", ["--scale", "2"], stdin: try encode([f, f]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try decode(r.stdout)
        XCTAssertEqual(out.count, 2)
        XCTAssertEqual(try out[0].require("eps").floats, [2, 4, 5, 7])   // u + 2 (c - u)
        XCTAssertNil(out[0]["eps_cond"]); XCTAssertNotNil(out[0]["t"])
        var bad = Frame(metadata: ["kind": "eps"])
        bad["eps_cond"] = Tensor([1] as [Float], shape: [1, 1])
        try assertFails("guide", ["--scale", "2"], stdin: try encode([bad]), "eps_uncond")
        try assertFails("guide", [], stdin: try encode([f]), "--scale")
        try assertFails("guide", ["--analytic", "cauchy mu=1"], stdin: try encode([f]), "analytic spec")
    }

    func testFromAndScore() throws {
        // x_t frames at t = 300 (with t), 3 samples of D = 2.
        let x: [Float] = [0.1, -0.4, 1.2, 0.9, -1.5, 0.3]
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor(x, shape: [3, 2])
        f["t"] = Tensor([300, 300, 300] as [Int64], shape: [3])
        let input = try encode([f])
        // Score: -(x - sqrt(abar) mu) / (abar sigma^2 + 1 - abar) for N(0.5, 0.3^2).
        let sc = try decode(try denoise(["--score", "--analytic", gauss], stdin: input))
        XCTAssertEqual(sc[0].kind, "score")
        let a = Schedule.standard().alphaBar[300]
        for (i, s) in try sc[0].require("score").floats.enumerated() {
            XCTAssertEqual(Double(s), -(Double(x[i]) - a.squareRoot() * 0.5) / (a * 0.09 + 1 - a), accuracy: 1e-5)
        }
        // Denoising from 300 with DDIM eta 0 is deterministic: two runs with other seeds agree.
        let args = ["--from", "300", "--analytic", gauss, "--sampler", "ddim", "--steps", "10", "--spacing", "trailing"]
        let d1 = try xs(try denoise(args + ["--seed", "1"], stdin: input))
        XCTAssertEqual(d1, try xs(try denoise(args + ["--seed", "2"], stdin: input)))
        XCTAssertEqual(d1.count, 6)
        try assertFails("denoise", ["--from", "299", "--analytic", gauss], stdin: input, "'t' = 300 but the chain starts at 299")
        try assertFails("denoise", ["--from", "1000", "--analytic", gauss], stdin: input, "start timestep 1000 is outside 0 ... 999")
        try assertFails("denoise", ["--from", "300", "--analytic", gauss, "--shape", "3"], stdin: input, "expected [N,3]")
    }

    func testTrajectoryFrames() throws {
        let out = try decode(try denoise(["--analytic", gauss, "--shape", "2", "-n", "3", "--steps", "20", "--every", "5"]))
        let traj = out.filter { $0.kind == "trajectory" }
        XCTAssertEqual(traj.map { $0.metadata["step"]! }, ["0", "5", "10", "15"])
        XCTAssertEqual(traj.map { $0.metadata["t"]! }, ["950", "700", "450", "200"])   // leading: t_i = 50 i
        XCTAssertEqual(try traj[0].require("x0_pred").shape, [3, 2])
        XCTAssertEqual(out.last?.kind, "batch")
    }

    func testZeroTerminalSNRScheduleGivesFiniteSamples() throws {
        let dir = temporaryDirectory()
        let path = dir.appendingPathComponent("z.st").path
        let s = try runTool("schedule", ["--zero-terminal-snr"])
        try s.stdout.write(to: URL(fileURLWithPath: path))
        let r = try runTool("denoise", ["--analytic", gauss, "--shape", "2", "-n", "4", "--steps", "10", "--spacing", "trailing",
                                        "--schedule", path, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("zero terminal SNR"), r.stderr)
        let out = try decode(r.stdout)
        XCTAssertTrue(try out[0].require("x").floats.allSatisfy { $0.isFinite })
        XCTAssertEqual(out[0].metadata["dropped_terminal_t"], "999")
    }

    func testMalformedInputFails() throws {
        let base = ["-n", "2", "--steps", "5"]
        for bad in ["0", "2,3", "a", "1,2,3,4", ""] {
            try assertFails("denoise", base + ["--analytic", gauss, "--shape", bad], "--shape")
        }
        try assertFails("denoise", base + ["--analytic", gauss], "--shape")
        try assertFails("denoise", ["--analytic", gauss, "--shape", "2", "--steps", "1001"], "exceed")
        try assertFails("denoise", ["--analytic", gauss, "--shape", "2", "--steps", "0"], "at least 1")
        try assertFails("denoise", base + ["--shape", "2"], "exactly one of")
        try assertFails("denoise", base + ["--analytic", gauss, "--shape", "2", "--sampler", "plms"], "--sampler")
        try assertFails("denoise", base + ["--analytic", gauss, "--shape", "2", "--guidance", "2"], "--label")
        try assertFails("denoise", base + ["--analytic", gauss, "--shape", "2", "--variance", "learned"], "answers 'v'")
        // Predictors that die, answer garbage, the wrong shape, nothing useful, or nothing at all.
        try assertFails("denoise", base + ["--predictor", "exit 3", "--shape", "2"], "exited with status 3")
        try assertFails("denoise", base + ["--predictor", "echo garbage-garbage; cat > /dev/null", "--shape", "2"], "bad answer from the predictor")
        try assertFails("denoise", base + ["--predictor", "cat", "--shape", "2"], "no 'eps'")
        try assertFails("denoise", base + ["--predictor", "\(toolPath("guide")) --analytic '\(gauss)'", "--shape", "2", "--variance", "learned"],
                        "answered no 'v'")
        var wrong = Frame(metadata: ["kind": "eps"])
        wrong["eps"] = Tensor([Float](repeating: 0, count: 6), shape: [2, 3])
        let reply = temporaryDirectory().appendingPathComponent("r.st").path
        try wrong.save(path: reply)
        try assertFails("denoise", base + ["--predictor", "cat '\(reply)'; cat > /dev/null", "--shape", "2"], "shape [2, 3], expected [2, 2]")
        let start = Date()
        try assertFails("denoise", base + ["--predictor", "sleep 20", "--shape", "2", "--timeout", "1"], "no answer within 1 s")
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        // The shell's own complaint comes first (the predictor's stderr is ours), then our one line.
        let r = try runTool("denoise", base + ["--predictor", "/nonexistent/predictor", "--shape", "2"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.split(separator: "\n").last!.hasPrefix("denoise: predictor '/nonexistent/predictor' exited with status 127"), r.stderr)
    }

    func testPythonPredictorFromTheDocs() throws {
        // The Python block after `<!-- python-predictor -->` in docs/FORMAT.md, run as a predictor; skipped without python3 + numpy.
        guard try runTool("guide", ["--version"]).status == 0,
              (try? runPython(["-c", "import numpy"])) == 0 else { throw XCTSkip("python3 with numpy not available") }
        let script = temporaryDirectory().appendingPathComponent("predictor.py")
        try documentedBlock("docs/FORMAT.md", after: "<!-- python-predictor -->", language: "python")
            .write(to: script, atomically: true, encoding: .utf8)
        let common = ["--shape", "2", "-n", "5", "--steps", "20", "--sampler", "ddim", "--eta", "1"]
        let py = try xs(try denoise(common + ["--predictor", "python3 '\(script.path)'"]))
        let native = try xs(try denoise(common + ["--analytic", gauss]))
        XCTAssertEqual(py.count, native.count)
        for i in 0..<py.count { XCTAssertEqual(py[i], native[i], accuracy: 1e-4) }
    }

    func runPython(_ args: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + args
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run(); p.waitUntilExit()
        return p.terminationStatus
    }

    func testHelpAndVersion() throws {
        for tool in ["denoise", "guide"] {
            let h = try runTool(tool, ["--help"])
            XCTAssertEqual(h.status, 0)
            let text = String(decoding: h.stdout, as: UTF8.self)
            let lower = text.lowercased()
            XCTAssertTrue(text.contains("Examples:") && lower.contains("reads") && lower.contains("writes") && text.contains("--version"), text)
            let v = try runTool(tool, ["--version"])
            XCTAssertEqual(String(decoding: v.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), toolkitVersion)
        }
    }
}
