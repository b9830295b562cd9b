// Frames written by `denoise` (samples, trajectories, scores) and by `guide` (as a filter) load
// in Python with safetensors.numpy, like those of schedule, noise, tensor and train (tested beside
// their tools). Skipped when python3 with numpy and safetensors is missing.
import Foundation
import XCTest
@testable import Shared

final class PythonInteropTests: XCTestCase {
    func python(_ script: String) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script]
        let o = Pipe(), e = Pipe()
        p.standardOutput = o
        p.standardError = e
        try p.run()
        let out = String(decoding: o.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, out, err)
    }

    func testDenoiseAndGuideFramesLoadInPython() throws {
        guard (try? python("import numpy, safetensors.numpy"))?.status == 0 else {
            throw XCTSkip("python3 with numpy and safetensors not available")
        }
        let dir = temporaryDirectory()
        let spec = "gaussian mu=0.5 sigma=0.3"
        // Samples, one frame of kind samples.
        let samples = try runTool("denoise", ["--analytic", spec, "--shape", "1,2,3", "-n", "5", "--steps", "10", "--seed", "3", "--quiet"])
        XCTAssertEqual(samples.status, 0, samples.stderr)
        try samples.stdout.write(to: dir.appendingPathComponent("samples.st"))
        // The score at t = 400 of those samples.
        let score = try runTool("denoise", ["--analytic", spec, "--shape", "1,2,3", "--from", "400", "--score", "--quiet"], stdin: samples.stdout)
        XCTAssertEqual(score.status, 0, score.stderr)
        try score.stdout.write(to: dir.appendingPathComponent("score.st"))
        // guide as a filter: eps_cond and eps_uncond in, eps out.
        var f = Frame(metadata: ["kind": "batch"])
        f["eps_cond"] = Tensor([1, 2, 3, 4] as [Float], shape: [2, 2])
        f["eps_uncond"] = Tensor([0, 0, 1, 1] as [Float], shape: [2, 2])
        let mixed = try runTool("guide", ["--scale", "3"], stdin: try encode([f]))
        XCTAssertEqual(mixed.status, 0, mixed.stderr)
        try mixed.stdout.write(to: dir.appendingPathComponent("mixed.st"))

        let r = try python("""
        import os
        from safetensors.numpy import load_file
        from safetensors import safe_open
        d = "\(dir.path)"
        s = load_file(os.path.join(d, "samples.st"))
        assert s["x"].shape == (5, 1, 2, 3) and str(s["x"].dtype) == "float32", s["x"].shape
        with safe_open(os.path.join(d, "samples.st"), "np") as h:
            assert h.metadata()["seed"] == "3", h.metadata()
        c = load_file(os.path.join(d, "score.st"))
        assert c["score"].shape == (5, 1, 2, 3), list(c)
        m = load_file(os.path.join(d, "mixed.st"))
        assert (m["eps"] == [[3, 6], [7, 10]]).all(), m["eps"]
        print("ok")
        """)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.out, "ok\n")
    }
}
