// Library-level tests of Shared/IO: frame round trips of every dtype, PNG,
// gzip, IDX, NPY, raw, toy data, statistics.
import Foundation
import XCTest
@testable import Shared

/// Python with numpy (and safetensors when asked), or nil.
func python(_ script: String, cwd: URL, needSafetensors: Bool = false) throws -> (status: Int32, out: String, err: String)? {
    let probe = needSafetensors ? "import numpy, safetensors" : "import numpy"
    func run(_ code: String) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", code]
        p.currentDirectoryURL = cwd
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        do { try p.run() } catch { return (127, "", "") }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
    guard try run(probe).0 == 0 else { return nil }
    return try run(script)
}

final class IOTests: XCTestCase {
    // MARK: frame format

    func testEveryDTypeRoundTripsThroughFrames() throws {
        var f = Frame(metadata: ["kind": "batch", "note": "quotes \" and \\ and ünïcode"])
        f["a"] = Tensor([Float(1.5), -0, .infinity, .leastNonzeroMagnitude, 3], shape: [5])
        f["b"] = Tensor([Double.pi, -1e300, 0.1, 4, 5, 6], shape: [2, 3])
        f["c"] = Tensor([Int64.min, Int64.max, 0, -1], shape: [2, 2, 1])
        f["d"] = Tensor([Int32.min, Int32.max, 7], shape: [3])
        f["e"] = Tensor([UInt8(0), 255, 128], shape: [3, 1])
        f["empty_f32"] = Tensor([Float](), shape: [0, 4])
        f["empty_u8"] = Tensor([UInt8](), shape: [0])
        f["scalar_f64"] = Tensor([Double(42.25)], shape: [])
        f["scalar_i64"] = Tensor([Int64(-7)], shape: [])
        f["scalar_i32"] = Tensor([Int32(9)], shape: [])
        let back = try decode(encode([f, f]))
        XCTAssertEqual(back.count, 2)
        for g in back {
            XCTAssertEqual(g.metadata, f.metadata)
            XCTAssertEqual(g.names, f.names)
            for (name, t) in f.tensors {
                let u = try g.require(name)
                XCTAssertEqual(u.shape, t.shape, name)
                XCTAssertEqual(u.dtype, t.dtype, name)
                // Bit-exact: compare the raw bytes (NaN-safe, keeps -0).
                XCTAssertEqual(t.withBytes { Array($0) }, u.withBytes { Array($0) }, name)
            }
        }
    }

    // MARK: gzip

    func testGzipRoundTripConcatenatedMembersAndTruncation() throws {
        var bytes = [UInt8](repeating: 0, count: 300_000)
        var r = RandomStream(seed: 1, purpose: .toy, index: 0)
        for i in bytes.indices { bytes[i] = UInt8(r.nextInt(below: 16)) }   // compressible, not trivial
        let z = try Gzip.compress(bytes)
        XCTAssertTrue(Gzip.isGzip(z))
        XCTAssertLessThan(z.count, bytes.count)
        XCTAssertEqual(try Gzip.decompress(z), bytes)
        let z2 = try Gzip.compress([1, 2, 3])
        XCTAssertEqual(try Gzip.decompress(z + z2), bytes + [1, 2, 3])
        XCTAssertThrowsError(try Gzip.decompress(Array(z.prefix(z.count / 2)), what: "t.gz")) {
            XCTAssertTrue("\($0)".contains("t.gz: truncated"), "\($0)")
        }
        var bad = z
        bad[20] ^= 0xFF; bad[21] ^= 0xFF; bad[22] ^= 0x55
        XCTAssertThrowsError(try Gzip.decompress(bad))
    }

    // MARK: PNG

    func testPNGEightBitGrayRGBRGBAAndPalette() throws {
        let dir = temporaryDirectory()
        let w = 5, h = 3
        // Gray: every value 0 ... 255 appears across files; check the exact mapping p/255*2-1.
        let gray = (0..<(w * h)).map { UInt8(($0 * 17) % 256) }
        let gp = dir.appendingPathComponent("g.png").path
        try PNG.write8(path: gp, width: w, height: h, channels: 1, pixels: gray)
        let g = try PNG.read(path: gp)
        XCTAssertEqual([g.width, g.height, g.channels], [w, h, 1])
        XCTAssertFalse(g.sixteenBit)
        for i in 0..<(w * h) { XCTAssertEqual(g.data[i], Float(gray[i]) / 255 * 2 - 1, accuracy: 1e-6) }

        // RGB: interleaved in the file, planar (C,H,W) in the tensor.
        let rgb = (0..<(w * h * 3)).map { UInt8(($0 * 37 + 11) % 256) }
        let cp = dir.appendingPathComponent("c.png").path
        try PNG.write8(path: cp, width: w, height: h, channels: 3, pixels: rgb)
        let c = try PNG.read(path: cp)
        XCTAssertEqual(c.channels, 3)
        for i in 0..<(w * h) { for k in 0..<3 {
            XCTAssertEqual(c.data[k * w * h + i], Float(rgb[i * 3 + k]) / 255 * 2 - 1, accuracy: 1e-6)
        } }

        // RGBA: alpha 255 keeps the colour, alpha 0 composites to black (x = -1),
        // alpha 128 lies strictly between black and the colour.
        var rgba: [UInt8] = []
        for i in 0..<(w * h) { rgba += [200, 100, 50, i % 3 == 0 ? 255 : i % 3 == 1 ? 0 : 128] }
        let ap = dir.appendingPathComponent("a.png").path
        try PNG.write8(path: ap, width: w, height: h, channels: 4, pixels: rgba)
        let a = try PNG.read(path: ap)
        XCTAssertEqual(a.channels, 3)
        for i in 0..<(w * h) { for (k, v) in [200, 100, 50].enumerated() {
            let x = a.data[k * w * h + i], full = Float(v) / 255 * 2 - 1
            switch i % 3 {
            case 0: XCTAssertEqual(x, full, accuracy: 1e-6)
            case 1: XCTAssertEqual(x, -1, accuracy: 1e-6)
            default: XCTAssertGreaterThan(x, -1); XCTAssertLessThan(x, full)
            }
        } }

        // Palette: indices expand to the colormap's colours exactly.
        let cmap: [UInt8] = [0, 0, 0, 255, 0, 0, 10, 20, 30, 255, 255, 255]
        let idx = (0..<(w * h)).map { UInt8($0 % 4) }
        let pp = dir.appendingPathComponent("p.png").path
        try PNG.writePalette(path: pp, width: w, height: h, indices: idx, colormap: cmap)
        let p = try PNG.read(path: pp)
        XCTAssertEqual(p.channels, 3)
        for i in 0..<(w * h) { for k in 0..<3 {
            XCTAssertEqual(p.data[k * w * h + i], Float(cmap[Int(idx[i]) * 3 + k]) / 255 * 2 - 1, accuracy: 1e-6)
        } }
        // Forcing channels: gray -> rgb repeats the value; rgb gray file forced to gray stays gray.
        let g3 = try PNG.read(path: gp, mode: .rgb)
        XCTAssertEqual(g3.channels, 3)
        XCTAssertEqual(Array(g3.data[0..<(w * h)]), g.data)
        XCTAssertEqual(Array(g3.data[(2 * w * h)...]), g.data)
        XCTAssertEqual(try PNG.read(path: cp, mode: .gray).channels, 1)
    }

    func testPNGSixteenBitExact() throws {
        let dir = temporaryDirectory()
        let w = 7, h = 2
        for ch in [1, 3] {
            let px = (0..<(w * h * ch)).map { UInt16(($0 * 4099 + 1) % 65536) }
            let path = dir.appendingPathComponent("s\(ch).png").path
            try PNG.write16(path: path, width: w, height: h, channels: ch, pixels: px)
            let probe = try PNG.probe(path: path)
            XCTAssertTrue(probe.sixteenBit)
            let img = try PNG.read(path: path)
            XCTAssertEqual(img.channels, ch)
            for i in 0..<(w * h) { for k in 0..<ch {
                // Float32 near 1 has spacing 6e-8; one 16-bit step is 3e-5.
                XCTAssertEqual(img.data[k * w * h + i], Float(px[i * ch + k]) / 65535 * 2 - 1, accuracy: 1e-6)
                XCTAssertEqual(PNG.quantize(img.data[k * w * h + i], maxValue: 65535), Int(px[i * ch + k]))
            } }
        }
    }

    func testPNGSixteenBitGrayAlphaCompositesOntoBlack() throws {
        let path = temporaryDirectory().appendingPathComponent("ga.png").path
        // (value, alpha) pairs: opaque keeps the value, transparent is black.
        try PNG.write16(path: path, width: 2, height: 1, channels: 2, pixels: [40000, 65535, 40000, 0])
        let img = try PNG.read(path: path)
        XCTAssertEqual(img.channels, 1)
        XCTAssertEqual(img.data[0], Float(40000) / 65535 * 2 - 1, accuracy: 1e-6)
        XCTAssertEqual(img.data[1], -1, accuracy: 1e-6)
    }

    func testPNGQuantizeClampsAndRoundsEveryLevel() {
        for p in 0...255 { XCTAssertEqual(PNG.quantize(Float(p) / 255 * 2 - 1, maxValue: 255), p) }
        XCTAssertEqual(PNG.quantize(-3, maxValue: 255), 0)
        XCTAssertEqual(PNG.quantize(7, maxValue: 255), 255)
        XCTAssertEqual(PNG.quantize(.nan, maxValue: 255), 0)
        XCTAssertEqual(PNG.quantize(0, maxValue: 255), 128)  // 127.5 rounds away from zero
    }

    func testMalformedPNGIsOneLineError() throws {
        let dir = temporaryDirectory()
        let path = dir.appendingPathComponent("bad.png").path
        try PNG.write8(path: path, width: 16, height: 16, channels: 3, pixels: [UInt8](repeating: 9, count: 768))
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        try good.prefix(good.count - 30).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try PNG.read(path: path)) { XCTAssertFalse("\($0)".contains("\n")) }
        try Data("not a png at all".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try PNG.read(path: path)) { XCTAssertTrue("\($0)".contains("not a readable PNG"), "\($0)") }
    }

    // MARK: IDX

    func testIDXParsesPlainAndGzipAndValidates() throws {
        let n = 5, h = 3, w = 4
        let pixels = (0..<(n * h * w)).map { UInt8(($0 * 7) % 256) }
        let a = IDXArray(type: .u8, dims: [n, h, w], bytes: pixels)
        let plain = IDX.serialize(a)
        for bytes in [plain, try Gzip.compress(plain)] {
            let b = try IDX.parse(bytes, name: "f")
            XCTAssertEqual(b.dims, [n, h, w])
            let x = IDX.images(b, range: 1..<4)
            XCTAssertEqual(x.shape, [3, 1, h, w])
            let f = x.floats
            for i in 0..<f.count { XCTAssertEqual(f[i], Float(pixels[h * w + i]) / 255 * 2 - 1, accuracy: 1e-6) }
        }
        // idx2 [N,D] -> [B,D]; big-endian i32 labels.
        let two = IDXArray(type: .u8, dims: [4, 6], bytes: [UInt8](repeating: 255, count: 24))
        XCTAssertEqual(IDX.images(try IDX.parse(IDX.serialize(two), name: "t"), range: 0..<4).shape, [4, 6])
        let lab = IDXArray(type: .i32, dims: [3], bytes: [0, 0, 0, 7, 0xFF, 0xFF, 0xFF, 0xFE, 0, 1, 0, 0])
        XCTAssertEqual(try IDX.labels(IDX.parse(IDX.serialize(lab), name: "l"), range: 0..<3).integers(), [7, -2, 65536])
        // Malformed: bad magic, unknown type, truncated data, extra data.
        func fails(_ bytes: [UInt8], _ fragment: String) {
            XCTAssertThrowsError(try IDX.parse(bytes, name: "m.idx")) {
                XCTAssertTrue("\($0)".contains(fragment) && "\($0)".hasPrefix("m.idx:"), "\($0)")
            }
        }
        fails([1, 2, 8, 3] + Array(plain[4...]), "bad IDX magic")
        fails([0, 0, 0x42, 3] + Array(plain[4...]), "unknown IDX element type")
        fails(Array(plain.dropLast()), "need \(plain.count) bytes but the file has \(plain.count - 1)")
        fails(plain + [0], "but the file has \(plain.count + 1)")
        fails([0, 0, 8, 3, 0, 0], "truncated IDX header")
        fails(Array(try Gzip.compress(plain).dropLast(10)), "truncated gzip")
    }

    // MARK: NPY

    /// An .npy file with a hand-made header of the given version.
    func npyBytes(version: UInt8, dict: String, data: [UInt8]) -> [UInt8] {
        var text = Array(dict.utf8)
        let fixed = version == 1 ? 10 : 12
        while (fixed + text.count + 1) % 64 != 0 { text.append(0x20) }
        text.append(0x0A)
        let n = text.count
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
        out += version == 1 ? [UInt8(n & 0xFF), UInt8(n >> 8)] : [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)]
        return out + text + data
    }

    func testNPYVersionsDTypesAndFortranOrder() throws {
        let values: [Tensor] = [
            Tensor([Float(1.5), -2, 3, 4, 5, 6], shape: [2, 3]),
            Tensor([Double(1e-300), -2, 3, 4, 5, 6], shape: [2, 3]),
            Tensor([Int64.min, -2, 3, 4, 5, Int64.max], shape: [2, 3]),
            Tensor([Int32(-1), -2, 3, 4, 5, 6], shape: [2, 3]),
            Tensor([UInt8(0), 2, 3, 4, 5, 255], shape: [2, 3]),
        ]
        for t in values {
            for version: UInt8 in [1, 2, 3] {
                let dict = "{'descr': '\(NPY.descr(t.dtype))', 'fortran_order': False, 'shape': (2, 3), }"
                let u = try NPY.parse(npyBytes(version: version, dict: dict, data: t.withBytes { Array($0) }), name: "a.npy")
                XCTAssertEqual(u.shape, [2, 3]); XCTAssertEqual(u.dtype, t.dtype)
                XCTAssertEqual(u.withBytes { Array($0) }, t.withBytes { Array($0) })
            }
            // Our own writer round-trips too.
            let v = try NPY.parse(NPY.serialize(t), name: "b.npy")
            XCTAssertEqual(v.withBytes { Array($0) }, t.withBytes { Array($0) })
            XCTAssertEqual(NPY.serialize(t).count % 64, t.byteCount % 64)  // preamble is a multiple of 64
        }
        // Fortran order: element (i,j,k) of shape (2,3,4) sits at i + 2j + 6k.
        let fdata = (0..<24).map { Float($0) }
        let f = try NPY.parse(npyBytes(version: 1, dict: "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }",
                                       data: fdata.withUnsafeBytes { Array($0) }), name: "f.npy")
        XCTAssertEqual(f.shape, [2, 3, 4])
        let fv = f.floats
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { XCTAssertEqual(fv[(i * 3 + j) * 4 + k], Float(i + 2 * j + 6 * k)) } } }
        // Scalars and 1-D.
        let s = try NPY.parse(npyBytes(version: 1, dict: "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", data: [Double(2.5)].withUnsafeBytes { Array($0) }), name: "s")
        XCTAssertEqual(s.shape, []); XCTAssertEqual(s.doubles, [2.5])
        XCTAssertEqual(try NPY.parse(NPY.serialize(Tensor([Int32(1), 2, 3], shape: [3])), name: "o").shape, [3])
        // Malformed.
        func fails(_ b: [UInt8], _ fragment: String) {
            XCTAssertThrowsError(try NPY.parse(b, name: "m.npy")) { XCTAssertTrue("\($0)".contains(fragment), "\($0)") }
        }
        fails(Array("not numpy at all".utf8), "bad magic")
        fails(npyBytes(version: 1, dict: "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", data: [0, 0, 0, 0]), "big-endian")
        fails(npyBytes(version: 1, dict: "{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }", data: [0, 0]), "unsupported dtype '<f2'")
        fails(npyBytes(version: 1, dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", data: [0, 0, 0, 0]), "needs 8 data bytes but the file has 4")
        fails(npyBytes(version: 4, dict: "{}", data: []), "unsupported .npy version 4")
        fails(npyBytes(version: 1, dict: "{'descr': '<f4', 'shape': (2,), }", data: []), "no 'fortran_order'")
    }

    func testNPYAgainstNumpy() throws {
        let dir = temporaryDirectory()
        let script = """
        import numpy as np, numpy.lib.format as F
        a = np.arange(24).reshape(2, 3, 4)
        for v in [(1, 0), (2, 0), (3, 0)]:
            for d in ['<f4', '<f8', '<i8', '<i4', '|u1']:
                for order in ['C', 'F']:
                    x = np.array(a * 3 - (0 if d == '|u1' else 20), dtype=d, order=order)
                    with open('a_%d_%s_%s.npy' % (v[0], d[1:], order), 'wb') as f:
                        F.write_array(f, x, version=v)
        x = np.load('ours.npy'); print(x.dtype, x.shape, x.ravel().tolist())
        """
        let ours = Tensor((0..<6).map { Double($0) / 4 }, shape: [3, 2])
        try FileBytes.write(NPY.serialize(ours), to: dir.appendingPathComponent("ours.npy").path)
        guard let r = try python(script, cwd: dir) else { throw XCTSkip("python3 with numpy not available") }
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.out.trimmingCharacters(in: .whitespacesAndNewlines), "float64 (3, 2) [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]")
        for v in [1, 2, 3] { for d in ["f4", "f8", "i8", "i4", "u1"] { for o in ["C", "F"] {
            let path = dir.appendingPathComponent("a_\(v)_\(d)_\(o).npy").path
            let bytes = try FileBytes.read(path)
            XCTAssertEqual(Int(bytes[6]), v)
            let t = try NPY.parse(bytes, name: path)
            XCTAssertEqual(t.shape, [2, 3, 4])
            XCTAssertEqual(t.doubles, (0..<24).map { Double($0 * 3 - (d == "u1" ? 0 : 20)) }, "\(v) \(d) \(o)")
        } } }
    }

    func testNPYStreamWriterConcatenates() throws {
        let dir = temporaryDirectory()
        let path = dir.appendingPathComponent("c.npy").path
        let w = try NPYStreamWriter(path: path)
        try w.append(Tensor([Float(1), 2, 3, 4], shape: [2, 2]), what: "frame 1")
        try w.append(Tensor([Float(5), 6], shape: [1, 2]), what: "frame 2")
        XCTAssertThrowsError(try w.append(Tensor([Float(5), 6, 7], shape: [1, 3]), what: "frame 3")) {
            XCTAssertTrue("\($0)".hasPrefix("frame 3:"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))  // nothing until finish()
        try w.finish()
        let t = try NPY.parse(FileBytes.read(path), name: path)
        XCTAssertEqual(t.shape, [3, 2]); XCTAssertEqual(t.floats, [1, 2, 3, 4, 5, 6])
    }

    // MARK: raw

    func testRawReaderBatchesAndRejectsPartialSample() throws {
        let dir = temporaryDirectory()
        let path = dir.appendingPathComponent("r.bin").path
        let values = (0..<(7 * 6)).map { Int32($0 - 20) }
        try FileBytes.write(values.withUnsafeBytes { Array($0) }, to: path)
        let fd = open(path, O_RDONLY); defer { close(fd) }
        let r = try RawReader(fd: fd, name: path, dtype: .i32, sampleShape: [2, 3], batch: 3)
        var got: [Int64] = [], shapes: [[Int]] = []
        while let t = try r.next() { shapes.append(t.shape); got += try t.integers() }
        XCTAssertEqual(shapes, [[3, 2, 3], [3, 2, 3], [1, 2, 3]])
        XCTAssertEqual(got, values.map { Int64($0) })
        try FileBytes.write([UInt8](repeating: 1, count: 4 * 6 * 2 + 5), to: path)
        let fd2 = open(path, O_RDONLY); defer { close(fd2) }
        let r2 = try RawReader(fd: fd2, name: path, dtype: .f32, sampleShape: [6], batch: 5)
        XCTAssertThrowsError(try r2.next()) { XCTAssertTrue("\($0)".contains("trailing partial sample: 5 of 24 bytes"), "\($0)") }
    }

    // MARK: toy data

    func testToyDataIsAFunctionOfSeedAndIndex() {
        for set in ToyDataset.allCases {
            let all = set.batch(seed: 5, range: 0..<50, noise: 0.1).floats
            let part = set.batch(seed: 5, range: 20..<30, noise: 0.1).floats
            XCTAssertEqual(Array(all[40..<60]), part, set.rawValue)
            XCTAssertNotEqual(set.batch(seed: 6, range: 0..<50, noise: 0.1).floats, all)
        }
    }

    func testToyDefinitionsHoldExactlyWithoutNoise() {
        let n = 20_000
        // Swiss roll: radius ρ = t/(4.5π) in [1/3, 1] and angle t = 4.5πρ.
        let s = ToyDataset.swissroll.batch(seed: 1, range: 0..<n, noise: 0).floats
        for i in 0..<n {
            let x = Double(s[2 * i]), y = Double(s[2 * i + 1])
            let rho = (x * x + y * y).squareRoot(), t = 4.5 * Double.pi * rho
            XCTAssert(rho >= 1.0 / 3 - 1e-6 && rho <= 1 + 1e-6)
            XCTAssertEqual(x, rho * cos(t), accuracy: 1e-5); XCTAssertEqual(y, rho * sin(t), accuracy: 1e-5)
        }
        // Moons: each point on its unit arc (after undoing the affine map).
        let m = ToyDataset.moons.batch(seed: 1, range: 0..<n, noise: 0).floats
        var upper = 0
        for i in 0..<n {
            let x = Double(m[2 * i]) * 1.5 + 0.5, y = Double(m[2 * i + 1]) * 1.5 + 0.25
            let dUpper = abs((x * x + y * y).squareRoot() - 1), dLower = abs(((x - 1) * (x - 1) + (y - 0.5) * (y - 0.5)).squareRoot() - 1)
            XCTAssertLessThan(min(dUpper, dLower), 1e-5)
            if dUpper < 1e-5 && y >= 0 { upper += 1 }
        }
        // Binomial(n, 1/2): sd = sqrt(n)/2 = 71; 5 sd bound.
        XCTAssertLessThan(abs(upper - n / 2), 5 * 71)
        // Checkerboard: only dark cells, each of the 8 with n/8 points (multinomial sd ≈ 47; 5 sd).
        let c = ToyDataset.checkerboard.batch(seed: 1, range: 0..<n, noise: 0).floats
        var cells = [Int](repeating: 0, count: 16)
        for i in 0..<n {
            let col = Int((Double(c[2 * i]) + 1) / 0.5), row = Int((Double(c[2 * i + 1]) + 1) / 0.5)
            XCTAssert((0..<4).contains(col) && (0..<4).contains(row))
            XCTAssertEqual((col + row) % 2, 0)
            cells[row * 4 + col] += 1
        }
        for k in 0..<16 where (k / 4 + k % 4) % 2 == 0 { XCTAssertLessThan(abs(cells[k] - n / 8), 5 * 47) }
    }

    func testEightGaussiansClusterStatistics() {
        let n = 40_000, sigma = 0.05
        let g = ToyDataset.eightGaussians.batch(seed: 2, range: 0..<n, noise: sigma).floats
        var count = [Int](repeating: 0, count: 8), sq = [Double](repeating: 0, count: 8)
        for i in 0..<n {
            let x = Double(g[2 * i]), y = Double(g[2 * i + 1])
            var a = atan2(y, x); if a < 0 { a += 2 * Double.pi }
            let k = Int((a / (2 * Double.pi / 8)).rounded()) % 8
            let cx = 0.8 * cos(2 * Double.pi * Double(k) / 8), cy = 0.8 * sin(2 * Double.pi * Double(k) / 8)
            count[k] += 1
            sq[k] += (x - cx) * (x - cx) + (y - cy) * (y - cy)
        }
        for k in 0..<8 {
            XCTAssertLessThan(abs(count[k] - n / 8), 5 * 66)   // multinomial sd sqrt(n p (1-p)) ≈ 66
            // E|d|² = 2σ²; relative sd of the mean of χ²₂/2 over 5000 points is 1/sqrt(5000) ≈ 1.4 %; allow 6 %.
            XCTAssertEqual(sq[k] / Double(count[k]) / (2 * sigma * sigma), 1, accuracy: 0.06)
        }
    }

    // MARK: stats

    func testTensorStatsClosedForms() {
        let s = TensorStats(Tensor([Float(1), 2, 3, 4], shape: [4]))
        XCTAssertEqual([s.min, s.max, s.mean], [1, 4, 2.5])
        XCTAssertEqual(s.std, 1.25.squareRoot(), accuracy: 1e-12)
        // Large offset: the two-pass variance keeps its accuracy (a naive Σx² - n m² would lose it).
        let big = TensorStats(Tensor((0..<1000).map { 1e9 + Double($0 % 2) }, shape: [1000]))
        XCTAssertEqual(big.std, 0.5, accuracy: 1e-9)
        let e = TensorStats(Tensor([UInt8](), shape: [0]))
        XCTAssertTrue(e.mean.isNaN)
        let nf = TensorStats(Tensor([Float(1), .nan, 3, .infinity], shape: [4]))
        XCTAssertEqual(nf.nonFinite, 2); XCTAssertEqual(nf.mean, 2)
    }
}
