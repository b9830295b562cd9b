// The built `tensor` tool: malformed streams, every subcommand end to end,
// and Python interop (safetensors.numpy.load, numpy.load).
import Foundation
import XCTest
@testable import Shared

final class IOToolTests: XCTestCase {
    /// A frame record from a raw header string and data bytes.
    func record(_ header: String, _ data: [UInt8] = [], length: UInt64? = nil) -> Data {
        let h = Array(header.utf8)
        let n = length ?? UInt64(h.count)
        return Data((0..<8).map { UInt8((n >> (8 * UInt64($0))) & 0xFF) } + h + data)
    }

    func goodFrame() throws -> Data {
        var f = Frame(metadata: ["kind": "batch", "seed": "3"])
        f["x"] = Tensor([Float(-1), 0.5, 2, 3.5], shape: [2, 2])
        f["y"] = Tensor([Int64(4), 9], shape: [2])
        return try encode([f])
    }

    func assertOneLineError(_ r: RunResult, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "exit status", file: file, line: line)
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, 2, "exactly one line on stderr: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("tensor: "), r.stderr, file: file, line: line)
        for f in fragments { XCTAssertTrue(r.stderr.contains(f), "'\(f)' missing in: \(r.stderr)", file: file, line: line) }
    }

    func testInfoRejectsMalformedStreamsNamingFrameAndProblem() throws {
        let good = try goodFrame()
        let f4: [UInt8] = [0, 0, 128, 63]  // 1.0 as F32
        let cases: [(String, Data, [String])] = [
            ("truncated length", Data([1, 2, 3]), ["truncated frame: 3 of 8 header-length bytes"]),
            ("truncated header", record("{\"x\":{}}", length: 100), ["header has 8 of 100 bytes"]),
            ("truncated data", record(#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, f4 + f4), ["tensor 'x' has 8 of 16 bytes"]),
            ("header over limit", record("{}", length: 200_000_000), ["exceeds the limit"]),
            ("invalid JSON", record(#"{"x": {"dtype": "F32",}"#), ["not valid JSON"]),
            ("not an object", record("[1, 2, 3]"), ["not a JSON object"]),
            ("missing dtype", record(#"{"x":{"shape":[1],"data_offsets":[0,4]}}"#, f4), ["tensor 'x': missing dtype"]),
            ("BF16", record(#"{"x":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#, f4), ["unsupported dtype BF16"]),
            ("size mismatch", record(#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, f4 + f4), ["needs 12 bytes but data_offsets span 8"]),
            ("overlap", record(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, f4 + f4 + f4), ["overlaps"]),
            ("gap", record(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, f4 + f4 + f4), ["gap in the data before tensor 'b'"]),
            ("duplicate key", record(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, f4), ["duplicate key 'x'"]),
            ("non-string metadata", record(#"{"__metadata__":{"seed":3}}"#), ["__metadata__ value for 'seed' is not a string"]),
            ("trailing partial frame", good.prefix(20), ["truncated frame"]),
        ]
        for (label, bad, fragments) in cases {
            // Always after one good frame: the error must name frame 2.
            let r = try runTool("tensor", ["info"], stdin: good + bad)
            assertOneLineError(r, ["stdin: frame 2: "] + fragments)
            let out = String(decoding: r.stdout, as: UTF8.self)
            XCTAssertTrue(out.contains("frame 1"), label)
            XCTAssertFalse(out.contains("frame 2"), label)
            // A tool that writes a file writes nothing at all.
            let dir = temporaryDirectory()
            let npy = dir.appendingPathComponent("o.npy").path
            let w = try runTool("tensor", ["to-npy", "-o", npy], stdin: good + bad)
            assertOneLineError(w, ["frame 2"])
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], label)
        }
    }

    func testInfoDescribesEveryTensor() throws {
        var f = Frame(metadata: ["kind": "model", "arch": "unet"])
        f["w"] = Tensor([Double(-2), 0, 2, 4], shape: [2, 2])
        f["n"] = Tensor([UInt8](), shape: [0])
        let r = try runTool("tensor", ["info"], stdin: try encode([f, f]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = String(decoding: r.stdout, as: UTF8.self)
        let lines = out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "frame 1  kind: model")
        XCTAssertTrue(lines.contains("  arch  unet"))
        // w: min -2, max 4, mean 1, population std sqrt(5) = 2.23607.
        let w = lines.first { $0.hasPrefix("  w ") }!.split(separator: " ").map(String.init)
        XCTAssertEqual(w, ["w", "F64", "[2,2]", "-2", "4", "1", "2.23607"])
        XCTAssertEqual(lines.first { $0.hasPrefix("  n ") }!.split(separator: " ").map(String.init), ["n", "U8", "[0]", "-", "-", "-", "-"])
        // Aligned: the header row and the rows start each column at the same offset.
        let head = lines.first { $0.hasPrefix("  tensor") }!
        let wl = lines.first { $0.hasPrefix("  w ") }!
        XCTAssertEqual(head.range(of: "dtype")!.lowerBound.utf16Offset(in: head), wl.range(of: "F64")!.lowerBound.utf16Offset(in: wl))
        XCTAssertTrue(out.contains("frame 2  kind: model"))
    }

    func testPNGRoundTripThroughTheTool() throws {
        let dir = temporaryDirectory()
        let w = 6, h = 4
        var paths: [String] = [], expected: [[UInt8]] = []
        for i in 0..<3 {
            let px = (0..<(w * h * 3)).map { UInt8(($0 * 29 + i * 71) % 256) }
            let p = dir.appendingPathComponent("in\(i).png").path
            try PNG.write8(path: p, width: w, height: h, channels: 3, pixels: px)
            paths.append(p); expected.append(px)
        }
        let r = try runTool("tensor", ["from-png"] + paths)
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try decode(r.stdout)
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f[0].kind, "batch")
        XCTAssertEqual(f[0].metadata["tool"], "tensor from-png")
        let x = try f[0].require("x")
        XCTAssertEqual(x.shape, [3, 3, h, w]); XCTAssertEqual(x.dtype, .f32)
        let v = x.floats
        XCTAssertEqual(v[(2 * 3 + 1) * w * h + 5], Float(expected[2][5 * 3 + 1]) / 255 * 2 - 1, accuracy: 1e-6)
        // Back to PNG: exactly the original pixels, files numbered from 000000.
        let prefix = dir.appendingPathComponent("out").path
        let o = try runTool("tensor", ["to-png", "-o", prefix], stdin: r.stdout)
        XCTAssertEqual(o.status, 0, o.stderr)
        for i in 0..<3 {
            let img = try PNG.read(path: prefix + String(format: "-%06d.png", i))
            let px = (0..<(w * h)).flatMap { j in (0..<3).map { UInt8(PNG.quantize(img.data[$0 * w * h + j], maxValue: 255)) } }
            XCTAssertEqual(px, expected[i])
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: prefix + "-000003.png"))
        // --gray gives C = 1; a different size is a one-line error naming the file.
        let g = try decode(try runTool("tensor", ["from-png", "--gray"] + paths).stdout)
        XCTAssertEqual(try g[0].require("x").shape, [3, 1, h, w])
        let small = dir.appendingPathComponent("small.png").path
        try PNG.write8(path: small, width: 2, height: 2, channels: 3, pixels: [UInt8](repeating: 0, count: 12))
        assertOneLineError(try runTool("tensor", ["from-png", paths[0], small]), ["small.png: 2x2", "differs"])
        let junk = dir.appendingPathComponent("junk.png").path
        try Data("junk".utf8).write(to: URL(fileURLWithPath: junk))
        assertOneLineError(try runTool("tensor", ["from-png", junk]), ["junk.png: not a readable PNG"])
    }

    func testGridLayoutPaddingBlankCellsAndTruncation() throws {
        // 4 gray 2x2 samples, sample k filled with the value of pixel level 40k+10.
        var f = Frame(metadata: ["kind": "batch"])
        let levels = (0..<4).map { 40 * $0 + 10 }
        f["x"] = Tensor(levels.flatMap { l in [Float](repeating: Float(l) / 255 * 2 - 1, count: 4) }, shape: [4, 1, 2, 2])
        let dir = temporaryDirectory()
        let path = dir.appendingPathComponent("g.png").path
        let r = try runTool("tensor", ["to-png", "--grid", "3x2", "--pad", "1", "--scale", "2", "-o", path], stdin: try encode([f]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let img = try PNG.read(path: path)
        // width = 3 cells * 4 px + 4 pads; height = 2 * 4 + 3.
        XCTAssertEqual([img.width, img.height, img.channels], [16, 11, 1])
        func px(_ x: Int, _ y: Int) -> Int { PNG.quantize(img.data[y * img.width + x], maxValue: 255) }
        for k in 0..<6 {
            let x0 = 1 + (k % 3) * 5, y0 = 1 + (k / 3) * 5
            for dy in 0..<4 { for dx in 0..<4 { XCTAssertEqual(px(x0 + dx, y0 + dy), k < 4 ? levels[k] : 255) } }
        }
        XCTAssertEqual(px(0, 0), 255); XCTAssertEqual(px(5, 3), 255)  // padding
        // More samples than cells: the first ones, and a note.
        let t = try runTool("tensor", ["to-png", "--grid", "1x1", "--pad", "0", "-o", path], stdin: try encode([f, f]))
        XCTAssertEqual(t.status, 0)
        XCTAssertTrue(t.stderr.contains("ignored the remaining 7"), t.stderr)
        let one = try PNG.read(path: path)
        XCTAssertEqual([one.width, one.height], [2, 2])
        XCTAssertEqual(PNG.quantize(one.data[0], maxValue: 255), levels[0])
        // Two channels: refused.
        var bad = Frame(metadata: ["kind": "batch"])
        bad["x"] = Tensor([Float](repeating: 0, count: 8), shape: [1, 2, 2, 2])
        assertOneLineError(try runTool("tensor", ["to-png", "-o", path], stdin: try encode([bad])), ["frame 1", "2 channels"])
    }

    func testFromIDXGzipAndPlainBatchesAndValidation() throws {
        let dir = temporaryDirectory()
        let n = 5
        let pixels = (0..<(n * 28 * 28)).map { UInt8(($0 * 13) % 256) }
        let images = IDX.serialize(IDXArray(type: .u8, dims: [n, 28, 28], bytes: pixels))
        let labels = IDX.serialize(IDXArray(type: .u8, dims: [n], bytes: [3, 1, 4, 1, 5]))
        let ip = dir.appendingPathComponent("img.gz").path, lp = dir.appendingPathComponent("lab").path
        try FileBytes.write(try Gzip.compress(images), to: ip)
        try FileBytes.write(labels, to: lp)
        let r = try runTool("tensor", ["from-idx", ip, lp, "--batch", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let frames = try decode(r.stdout)
        XCTAssertEqual(frames.map { try! $0.require("x").shape }, [[2, 1, 28, 28], [2, 1, 28, 28], [1, 1, 28, 28]])
        XCTAssertEqual(try frames.flatMap { try $0.require("y").integers() }, [3, 1, 4, 1, 5])
        XCTAssertEqual(frames.map { $0.metadata["first"]! }, ["0", "2", "4"])
        let x = try frames.flatMap { try $0.require("x").floats }
        for i in stride(from: 0, to: x.count, by: 97) { XCTAssertEqual(x[i], Float(pixels[i]) / 255 * 2 - 1, accuracy: 1e-6) }
        let lim = try decode(try runTool("tensor", ["from-idx", ip, "--limit", "3"]).stdout)
        XCTAssertEqual(lim.count, 1); XCTAssertEqual(try lim[0].require("x").shape[0], 3); XCTAssertNil(lim[0]["y"])
        // Label count differs from the image count.
        let l4 = dir.appendingPathComponent("l4").path
        try FileBytes.write(IDX.serialize(IDXArray(type: .u8, dims: [4], bytes: [1, 2, 3, 4])), to: l4)
        assertOneLineError(try runTool("tensor", ["from-idx", ip, l4]), ["4 labels but", "has 5 images"])
        let bad = dir.appendingPathComponent("bad").path
        try FileBytes.write([9, 9, 9, 9] + Array(images[4...]), to: bad)
        assertOneLineError(try runTool("tensor", ["from-idx", bad]), ["bad IDX magic 09 09 09 09"])
        try FileBytes.write(Array(images.prefix(1000)), to: bad)
        assertOneLineError(try runTool("tensor", ["from-idx", bad]), ["need \(images.count) bytes but the file has 1000"])
    }

    func testNPYThroughTheTool() throws {
        let dir = temporaryDirectory()
        let a = dir.appendingPathComponent("a.npy").path
        try FileBytes.write(NPY.serialize(Tensor((0..<12).map { Int32($0) }, shape: [6, 2])), to: a)
        let r = try runTool("tensor", ["from-npy", a, "--name", "y", "--batch", "4"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let frames = try decode(r.stdout)
        XCTAssertEqual(frames.map { try! $0.require("y").shape }, [[4, 2], [2, 2]])
        XCTAssertEqual(frames[0].kind, "batch")
        // to-npy concatenates along axis 0; --first takes the first frame only.
        let b = dir.appendingPathComponent("b.npy").path
        XCTAssertEqual(try runTool("tensor", ["to-npy", "-o", b, "--name", "y"], stdin: r.stdout).status, 0)
        let t = try NPY.parse(FileBytes.read(b), name: b)
        XCTAssertEqual(t.shape, [6, 2]); XCTAssertEqual(t.dtype, .i32); XCTAssertEqual(try t.integers(), (0..<12).map { Int64($0) })
        XCTAssertEqual(try runTool("tensor", ["to-npy", "--first", "-o", b, "--name", "y"], stdin: r.stdout).status, 0)
        XCTAssertEqual(try NPY.parse(FileBytes.read(b), name: b).shape, [4, 2])
        assertOneLineError(try runTool("tensor", ["to-npy", "-o", b], stdin: r.stdout), ["frame 1", "no tensor 'x'"])
        let junk = dir.appendingPathComponent("junk.npy").path
        try FileBytes.write(Array("\u{93}NUMPY nonsense".utf8), to: junk)
        assertOneLineError(try runTool("tensor", ["from-npy", junk]), ["junk.npy"])
    }

    func testFromRawAndToyThroughTheTool() throws {
        let bytes = Data((0..<(3 * 4)).map { UInt8($0 * 20) })
        let r = try runTool("tensor", ["from-raw", "--shape", "2,2", "--dtype", "u8", "--batch", "2", "--images"], stdin: bytes)
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try decode(r.stdout)
        XCTAssertEqual(f.map { try! $0.require("x").shape }, [[2, 2, 2], [1, 2, 2]])
        for (a, b) in zip(try f[1].require("x").floats, (8..<12).map { Float($0 * 20) / 255 * 2 - 1 }) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        assertOneLineError(try runTool("tensor", ["from-raw", "--shape", "2,2", "--dtype", "f32"], stdin: bytes + Data([1])),
                           ["trailing partial sample: 13 of 16 bytes"])
        assertOneLineError(try runTool("tensor", ["from-raw", "--shape", "2,0"], stdin: bytes), ["--shape"])
        // Toy data: identical whether written in one frame or in batches.
        let one = try decode(try runTool("tensor", ["toy", "8gaussians", "-n", "100", "--seed", "4"]).stdout)
        let many = try decode(try runTool("tensor", ["toy", "8gaussians", "-n", "100", "--seed", "4", "--batch", "30"]).stdout)
        XCTAssertEqual(many.count, 4)
        XCTAssertEqual(try one[0].require("x").floats, try many.flatMap { try $0.require("x").floats })
        XCTAssertEqual(one[0].metadata["tool"], "tensor toy"); XCTAssertEqual(one[0].kind, "batch")
        XCTAssertEqual(one[0].metadata["seed"], "4")
        // An unknown data set is an argument error (ArgumentParser's message, one line), listing the sets.
        let spiral = try runTool("tensor", ["toy", "spiral", "-n", "10"])
        XCTAssertEqual(spiral.status, 1)
        XCTAssertEqual(spiral.stderr.split(separator: "\n").count, 1, spiral.stderr)
        XCTAssertTrue(spiral.stderr.hasPrefix("tensor: The value 'spiral' is invalid"), spiral.stderr)
        XCTAssertTrue(spiral.stderr.contains("'swissroll', 'moons', '8gaussians' or 'checkerboard'"), spiral.stderr)
    }

    func testScatterDrawsPanelsAndRefusesWrongShapes() throws {
        let dir = temporaryDirectory()
        var a = Frame(metadata: ["kind": "batch"]); a["x"] = Tensor([Float(0.5), 0.5], shape: [1, 2])
        var b = Frame(metadata: ["kind": "batch"]); b["x"] = Tensor([Float(-0.5), -0.5, 5, 5], shape: [2, 2])
        let ap = dir.appendingPathComponent("a.st").path, bp = dir.appendingPathComponent("b.st").path
        try a.save(path: ap); try b.save(path: bp)
        let out = dir.appendingPathComponent("s.png").path
        let r = try runTool("tensor", ["scatter", ap, bp, "-o", out, "--size", "101", "--range", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("1 point(s) outside"), r.stderr)
        let img = try PNG.read(path: out)
        XCTAssertEqual([img.width, img.height, img.channels], [2 * 101 + 8, 101, 3])
        let plot = try ScatterPlot(panels: 2, size: 101, range: 1)
        func rgb(_ x: Int, _ y: Int) -> [Int] { (0..<3).map { PNG.quantize(img.data[$0 * img.width * img.height + y * img.width + x], maxValue: 255) } }
        let (ax, ay) = plot.pixel(0.5, 0.5)!
        let (bx, by) = plot.pixel(-0.5, -0.5)!
        XCTAssertGreaterThan(rgb(ax, ay)[2], rgb(ax, ay)[0])            // blue dot in panel 1
        XCTAssertGreaterThan(rgb(101 + 8 + bx, by)[0], rgb(101 + 8 + bx, by)[2])  // orange dot in panel 2
        XCTAssertEqual(rgb(ax, ay + 20), [255, 255, 255])               // background
        XCTAssertEqual(rgb(101 + 8 + ax, ay), [255, 255, 255])          // panel 2 has no point there
        var c = Frame(metadata: ["kind": "batch"]); c["x"] = Tensor([Float](repeating: 0, count: 6), shape: [2, 3])
        let cp = dir.appendingPathComponent("c.st").path
        try c.save(path: cp)
        assertOneLineError(try runTool("tensor", ["scatter", cp, "-o", out]), ["frame 1", "[2, 3]", "[N,2]"])
    }

    func testHelpAndVersion() throws {
        for sub in ["from-png", "to-png", "from-idx", "from-npy", "to-npy", "from-raw", "info", "toy", "scatter"] {
            let r = try runTool("tensor", [sub, "--help"])
            XCTAssertEqual(r.status, 0, sub)
            XCTAssertTrue(String(decoding: r.stdout, as: UTF8.self).contains("tensor \(sub)"), sub)
        }
        XCTAssertEqual(String(decoding: try runTool("tensor", ["--version"]).stdout, as: UTF8.self), toolkitVersion + "\n")
    }

    // MARK: Python interop

    func testFramesLoadInPythonSafetensors() throws {
        let dir = temporaryDirectory()
        try PNG.write8(path: dir.appendingPathComponent("p.png").path, width: 3, height: 2, channels: 1, pixels: [0, 51, 102, 153, 204, 255])
        let png = try runTool("tensor", ["from-png", dir.appendingPathComponent("p.png").path])
        try png.stdout.write(to: dir.appendingPathComponent("png.st"))
        let images = IDX.serialize(IDXArray(type: .u8, dims: [3, 2, 2], bytes: (0..<12).map { UInt8($0 * 21) }))
        let labels = IDX.serialize(IDXArray(type: .u8, dims: [3], bytes: [7, 8, 9]))
        try FileBytes.write(try Gzip.compress(images), to: dir.appendingPathComponent("i.gz").path)
        try FileBytes.write(labels, to: dir.appendingPathComponent("l").path)
        let idx = try runTool("tensor", ["from-idx", dir.appendingPathComponent("i.gz").path, dir.appendingPathComponent("l").path])
        try idx.stdout.write(to: dir.appendingPathComponent("idx.st"))
        let toy = try runTool("tensor", ["toy", "moons", "-n", "5", "--seed", "1"])
        try toy.stdout.write(to: dir.appendingPathComponent("toy.st"))
        let toyX = try decode(toy.stdout)[0].require("x").floats
        let script = """
        import numpy as np
        from safetensors.numpy import load
        from safetensors import safe_open
        p = load(open('png.st', 'rb').read())
        assert p['x'].dtype == np.float32 and p['x'].shape == (1, 1, 2, 3), p['x'].shape
        assert np.allclose(p['x'].ravel(), np.array([0, 51, 102, 153, 204, 255]) / 255 * 2 - 1, atol=1e-6)
        d = load(open('idx.st', 'rb').read())
        assert d['x'].shape == (3, 1, 2, 2) and d['y'].dtype == np.int64 and d['y'].tolist() == [7, 8, 9]
        assert np.allclose(d['x'].ravel(), np.arange(12) * 21 / 255 * 2 - 1, atol=1e-6)
        with safe_open('toy.st', 'np') as f:
            assert f.metadata()['kind'] == 'batch' and f.metadata()['tool'] == 'tensor toy'
            t = f.get_tensor('x')
        print(' '.join(repr(float(v)) for v in t.ravel()))
        """
        guard let r = try python(script, cwd: dir, needSafetensors: true) else { throw XCTSkip("python3 with numpy and safetensors not available") }
        XCTAssertEqual(r.status, 0, r.err)
        let values = r.out.split(separator: " ").map { Float(Double($0.trimmingCharacters(in: .whitespacesAndNewlines))!) }
        XCTAssertEqual(values, toyX)
    }

    func testToNPYLoadsInNumpy() throws {
        let dir = temporaryDirectory()
        let toy = try runTool("tensor", ["toy", "swissroll", "-n", "7", "--seed", "2", "--batch", "3"])
        let path = dir.appendingPathComponent("t.npy").path
        XCTAssertEqual(try runTool("tensor", ["to-npy", "-o", path], stdin: toy.stdout).status, 0)
        let x = try decode(toy.stdout).flatMap { try $0.require("x").floats }
        guard let r = try python("import numpy as np; a = np.load('t.npy'); print(a.dtype, a.shape); print(' '.join(repr(float(v)) for v in a.ravel()))", cwd: dir)
        else { throw XCTSkip("python3 with numpy not available") }
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n")
        XCTAssertEqual(lines[0], "float32 (7, 2)")
        XCTAssertEqual(lines[1].split(separator: " ").map { Float(Double($0)!) }, x)
    }
}
