// Python interop: the stream reader printed in docs/FORMAT.md reads our
// streams, and safetensors.numpy loads single frames written by `schedule` and `noise`.
import XCTest
import Foundation
@testable import Shared

final class NoisePythonTests: XCTestCase {
    func requirePython(_ modules: String) throws {
        guard let r = try? shell("python3 -c 'import \(modules)'"), r.status == 0 else {
            throw XCTSkip("python3 with \(modules) is not available")
        }
    }

    /// The ```python block that follows `<!-- python-stream-reader -->` in docs/FORMAT.md.
    func documentedReader() throws -> String {
        try documentedBlock("docs/FORMAT.md", after: "<!-- python-stream-reader -->", language: "python")
    }

    /// A stream with every dtype, an empty tensor, a scalar, metadata, several frames.
    func sampleStream() throws -> [Frame] {
        var odd = Frame(metadata: ["kind": "misc", "note": "quote \" and é"])
        odd["u8"] = Tensor([UInt8](0..<6), shape: [2, 3])
        odd["i32"] = Tensor([Int32(-7), 8], shape: [2])
        odd["f64"] = Tensor([Double.pi], shape: [])
        odd["empty"] = Tensor([Float](), shape: [0, 4])
        var x0 = Frame(metadata: ["kind": "batch"])
        x0["x"] = Tensor((0..<(6 * 8)).map { Float($0) / 24 - 1 }, shape: [6, 2, 2, 2])
        x0["y"] = Tensor((0..<6).map { Int64($0 % 3) }, shape: [6])
        let r = try runTool("noise", ["-t", "10,900", "--seed", "4"], stdin: try encode([x0]))
        XCTAssertEqual(r.status, 0, r.stderr)
        return [Schedule.standard().frame()] + (try decode(r.stdout)) + [odd]
    }

    /// What the Python side prints for each frame: metadata, and per tensor dtype, shape, values.
    struct Summary: Decodable { var meta: [String: String]; var tensors: [String: TensorSummary] }
    struct TensorSummary: Decodable { var dtype: String; var shape: [Int]; var values: [Double] }

    func compare(_ frames: [Frame], _ summaries: [Summary]) {
        XCTAssertEqual(frames.count, summaries.count)
        for (f, s) in zip(frames, summaries) {
            XCTAssertEqual(f.metadata, s.meta)
            XCTAssertEqual(Set(f.names), Set(s.tensors.keys))
            for (name, t) in f.tensors {
                guard let p = s.tensors[name] else { continue }
                XCTAssertEqual(p.shape, t.shape, name)
                XCTAssertEqual(p.values, t.doubles, "\(name): values differ")   // exact: JSON floats round-trip
                let np = ["F32": "float32", "F64": "float64", "I64": "int64", "I32": "int32", "U8": "uint8"]
                XCTAssertEqual(p.dtype, np[t.dtype.rawValue], name)
            }
        }
    }

    func testDocumentedStreamReader() throws {
        try requirePython("numpy")
        let dir = temporaryDirectory()
        let frames = try sampleStream()
        let stream = dir.appendingPathComponent("s.st").path
        try Frame.save(frames, path: stream)
        try documentedReader().write(to: dir.appendingPathComponent("ddpm_stream.py"), atomically: true, encoding: .utf8)
        let script = """
        import json, sys
        sys.path.insert(0, "\(dir.path)")
        from ddpm_stream import read_stream
        out = [{"meta": m, "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape),
                "values": [float(e) for e in v.ravel()]} for k, v in t.items()}}
               for m, t in read_stream(open("\(stream)", "rb"))]
        print(json.dumps(out))
        """
        let r = try shell("python3 - <<'EOF'\n\(script)\nEOF")
        XCTAssertEqual(r.status, 0, r.stderr)
        let summaries = try JSONDecoder().decode([Summary].self, from: Data(r.stdout.utf8))
        compare(frames, summaries)
        // A truncated stream is an error in the documented reader too.
        let data = try Data(contentsOf: URL(fileURLWithPath: stream))
        try data.prefix(data.count - 5).write(to: URL(fileURLWithPath: stream))
        let t = try shell("cd \(dir.path) && python3 -c 'from ddpm_stream import read_stream; list(read_stream(open(\"s.st\", \"rb\")))'")
        XCTAssertNotEqual(t.status, 0)
        XCTAssertTrue(t.stderr.contains("truncated"), t.stderr)
    }

    /// Frames written by `schedule` and by `noise` load with safetensors.numpy, metadata included.
    func testSafetensorsLoadsScheduleAndNoiseFrames() throws {
        try requirePython("numpy, safetensors.numpy")
        let dir = temporaryDirectory()
        let sched = try runTool("schedule", ["--cosine", "-T", "50"])
        XCTAssertEqual(sched.status, 0, sched.stderr)
        let schedPath = dir.appendingPathComponent("cosine.st").path
        try sched.stdout.write(to: URL(fileURLWithPath: schedPath))
        var x0 = Frame(metadata: ["kind": "batch"])
        x0["x"] = Tensor((0..<30).map { Float($0) / 15 - 1 }, shape: [5, 6])
        let noised = try runTool("noise", ["-t", "25", "--seed", "9", "--schedule", schedPath], stdin: try encode([x0]))
        XCTAssertEqual(noised.status, 0, noised.stderr)
        let noisePath = dir.appendingPathComponent("noised.st").path
        try noised.stdout.write(to: URL(fileURLWithPath: noisePath))
        let script = """
        import json
        from safetensors.numpy import load_file, load
        from safetensors import safe_open
        out = []
        for path in ["\(schedPath)", "\(noisePath)"]:
            t = load_file(path)
            u = load(open(path, "rb").read())
            assert sorted(u) == sorted(t) and all(u[k].dtype == v.dtype and (u[k] == v).all() for k, v in t.items())
            with safe_open(path, "np") as f:
                meta = f.metadata()
            out.append({"meta": meta, "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape),
                        "values": [float(e) for e in v.ravel()]} for k, v in t.items()}})
        print(json.dumps(out))
        """
        let r = try shell("python3 - <<'EOF'\n\(script)\nEOF")
        XCTAssertEqual(r.status, 0, r.stderr)
        let summaries = try JSONDecoder().decode([Summary].self, from: Data(r.stdout.utf8))
        compare([try Frame.load(path: schedPath), try Frame.load(path: noisePath)], summaries)
        XCTAssertEqual(summaries.first?.tensors.count, 11)
        XCTAssertEqual(summaries.last?.meta["t"], "25")
    }
}
