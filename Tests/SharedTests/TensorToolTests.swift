// The built `tensor` tool after its split into option structs and Shared/IO jobs: every
// converter writes stdout without -o (byte for byte the -o file), never a terminal; flag
// rules are one line; devices and FIFOs given as -o are written in place, not replaced.
import Foundation
import XCTest
@testable import Shared

final class TensorToolTests: XCTestCase {
    /// Samples for the converters: 6 gray 4x4 images (x F32 [6,1,4,4]) in two frames, and 2-D points.
    func fixtures() throws -> (images: Data, points: Data, dir: URL) {
        var a = Frame(metadata: ["kind": "batch"]), b = Frame(metadata: ["kind": "batch"])
        a["x"] = Tensor((0..<64).map { Float($0 % 17) / 8 - 1 }, shape: [4, 1, 4, 4])
        b["x"] = Tensor((0..<32).map { Float($0 % 5) / 2 - 1 }, shape: [2, 1, 4, 4])
        let dir = temporaryDirectory()
        let points = try runTool("tensor", ["toy", "moons", "-n", "300", "--seed", "2", "--batch", "100"]).stdout
        try points.write(to: dir.appendingPathComponent("p.st"))
        return (try encode([a, b]), points, dir)
    }

    func assertOneLine(_ r: RunResult, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 1, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n", omittingEmptySubsequences: false).count, 2, "one line: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("tensor: "), r.stderr, file: file, line: line)
        for f in fragments { XCTAssertTrue(r.stderr.contains(f), "'\(f)' missing in: \(r.stderr)", file: file, line: line) }
    }

    func testConvertersWriteStdoutWithoutOutputByteEqualToTheFile() throws {
        let (images, points, dir) = try fixtures()
        let cases: [([String], Data)] = [
            (["to-npy"], images),
            (["to-npy", "--first"], images),
            (["to-png", "--grid", "3x2", "--pad", "1", "--scale", "2"], images),
            (["to-png", "--grid", "4x4", "--16bit", "--background=-1"], images),
            (["scatter", "-", dir.appendingPathComponent("p.st").path, "--size", "64"], points),
        ]
        for (args, input) in cases {
            let path = dir.appendingPathComponent("out").path
            let file = try runTool("tensor", args + ["-o", path], stdin: input)
            XCTAssertEqual(file.status, 0, "\(args): \(file.stderr)")
            let expected = try Data(contentsOf: URL(fileURLWithPath: path))
            XCTAssertGreaterThan(expected.count, 64, "\(args)")
            for extra in [[], ["-o", "-"]] {
                let out = try runTool("tensor", args + extra, stdin: input)
                XCTAssertEqual(out.status, 0, "\(args + extra): \(out.stderr)")
                XCTAssertEqual(out.stdout, expected, "\(args + extra): stdout differs from the -o file")
                XCTAssertEqual(out.stderr, file.stderr, "\(args + extra)")
            }
            try FileManager.default.removeItem(atPath: path)
        }
        // The stdout forms decode: the .npy holds all 6 samples, the PNG the grid.
        let npy = try runTool("tensor", ["to-npy"], stdin: images).stdout
        XCTAssertEqual(try NPY.parse([UInt8](npy), name: "stdout").shape, [6, 1, 4, 4])
        let png = dir.appendingPathComponent("g.png").path
        try runTool("tensor", ["to-png", "--grid", "3x2", "--pad", "1"], stdin: images).stdout.write(to: URL(fileURLWithPath: png))
        let img = try PNG.read(path: png)
        XCTAssertEqual([img.width, img.height, img.channels], [3 * 4 + 4, 2 * 4 + 3, 1])
    }

    func testFailedStdoutRunWritesNothing() throws {
        let (images, _, _) = try fixtures()
        var bad = Frame(metadata: ["kind": "batch"])
        bad["x"] = Tensor([Float](repeating: 0, count: 16), shape: [1, 4, 4])  // [N,H,W]: fine for PNG, not for concatenation with [N,1,4,4]
        let r = try runTool("tensor", ["to-npy"], stdin: images + (try encode([bad])))
        XCTAssertEqual(r.stdout.count, 0)
        assertOneLine(r, ["frame 3", "does not match"])
    }

    func testPerSamplePNGsNeedAPrefix() throws {
        let (images, _, dir) = try fixtures()
        assertOneLine(try runTool("tensor", ["to-png"], stdin: images), ["-o PREFIX", "--grid"])
        let prefix = dir.appendingPathComponent("s").path
        XCTAssertEqual(try runTool("tensor", ["to-png", "-o", prefix], stdin: images).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: prefix + "-000005.png"))
    }

    func testFlagRulesAreOneLineAndBadValuesArgumentErrors() throws {
        let (images, points, _) = try fixtures()
        // Values that read but break a rule: validate(), one line naming the flag, status 1.
        assertOneLine(try runTool("tensor", ["from-png", "--gray", "--rgb", "a.png"]), ["--gray and --rgb exclude each other"])
        assertOneLine(try runTool("tensor", ["from-raw", "--shape", "2", "--images"], stdin: Data([1, 2])), ["--images needs --dtype u8"])
        assertOneLine(try runTool("tensor", ["from-raw", "--shape", "3,0"], stdin: Data([1, 2])), ["--shape", "'3,0'"])
        assertOneLine(try runTool("tensor", ["from-raw", "--shape", "100000,100000", "--batch", "1000"], stdin: Data()), ["--batch x sample size exceeds 4 GiB"])
        assertOneLine(try runTool("tensor", ["from-idx", "i.gz", "--batch", "0"]), ["--batch must be positive (got 0)"])
        assertOneLine(try runTool("tensor", ["from-npy", "a.npy", "--batch", "0"]), ["--batch must be positive (got 0)"])
        assertOneLine(try runTool("tensor", ["to-png", "--grid", "0x2"], stdin: images), ["--grid needs positive COLSxROWS (got 0x2)"])
        assertOneLine(try runTool("tensor", ["to-png", "--grid", "2x2", "--pad=-1"], stdin: images), ["--pad must be >= 0"])
        assertOneLine(try runTool("tensor", ["to-png", "-o", "p", "--scale", "0"], stdin: images), ["--scale must be >= 1"])
        assertOneLine(try runTool("tensor", ["scatter", "-", "--size", "8"], stdin: points), ["--size must be in 16 ... 8192 (got 8)"])
        assertOneLine(try runTool("tensor", ["scatter", "-", "--range", "0"], stdin: points), ["--range must be positive"])
        assertOneLine(try runTool("tensor", ["scatter", "-", "-"], stdin: points), ["stdin ('-') can be read only once"])
        assertOneLine(try runTool("tensor", ["toy", "moons", "-n", "0"]), ["-n must be positive (got 0)"])
        assertOneLine(try runTool("tensor", ["toy", "moons", "-n", "10", "--noise=-1"]), ["--noise must be >= 0"])
        assertOneLine(try runTool("tensor", ["toy", "moons", "-n", "100000000"]), ["add --batch"])
        assertOneLine(try runTool("tensor", ["reshape", "--shape", "2", "--names", ","], stdin: points), ["--names must name at least one tensor"])
        // Values that cannot be read as their type: ArgumentParser's message, also as one line.
        for (args, fragment) in [(["from-raw", "--shape", "2", "--dtype", "f16"], "'f32', 'f64', 'i64', 'i32' or 'u8'"),
                                 (["to-png", "--grid", "8"], "'8' is invalid for '--grid <grid>'"),
                                 (["reshape", "--shape", "a,b"], "'a,b' is invalid for '--shape <shape>'")] {
            assertOneLine(try runTool("tensor", args, stdin: images), [fragment])
        }
        // dtype in any case; the frame keeps the stored name.
        let raw = try decode(try runTool("tensor", ["from-raw", "--shape", "2", "--dtype", "I32"], stdin: Data(count: 16)).stdout)
        XCTAssertEqual(try raw[0].require("x").dtype, .i32)
    }

    /// Runs the tool with stdout on a pseudo-terminal; returns status and stderr.
    func runOnTerminal(_ args: [String], stdin: Data) throws -> (Int32, String) {
        // posix_openpt and friends are not in the Glibc module: /dev/ptmx, and the rest looked up.
        typealias FDCall = @convention(c) (Int32) -> Int32
        typealias NameCall = @convention(c) (Int32) -> UnsafeMutablePointer<CChar>?
        guard let g = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "grantpt"), let u = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "unlockpt"),
              let n = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "ptsname") else { throw XCTSkip("no pseudo-terminal functions") }
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        guard master >= 0 else { throw XCTSkip("no pseudo-terminal") }
        defer { close(master) }
        guard unsafeBitCast(g, to: FDCall.self)(master) == 0, unsafeBitCast(u, to: FDCall.self)(master) == 0,
              let name = unsafeBitCast(n, to: NameCall.self)(master) else { throw XCTSkip("no pseudo-terminal") }
        let slave = open(String(cString: name), O_RDWR | O_NOCTTY)
        guard slave >= 0 else { throw XCTSkip("no pseudo-terminal") }
        let input = temporaryDirectory().appendingPathComponent("in.st")
        try stdin.write(to: input)
        let p = Process()
        p.executableURL = productsDirectory.appendingPathComponent("tensor")
        p.arguments = args
        p.standardInput = FileHandle(forReadingAtPath: input.path)
        p.standardOutput = FileHandle(fileDescriptor: slave, closeOnDealloc: true)
        let err = Pipe()
        p.standardError = err
        try p.run()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: e, as: UTF8.self))
    }

    func testBinaryOutputRefusesATerminal() throws {
        let (images, points, _) = try fixtures()
        for (args, input, what) in [(["to-npy"], images, ".npy data"), (["to-npy", "--first"], images, ".npy data"),
                                    (["to-png", "--grid", "2x2"], images, "a PNG image"), (["scatter", "-"], points, "a PNG image")] {
            let (status, err) = try runOnTerminal(args, stdin: input)
            XCTAssertEqual(status, 1, "\(args)")
            XCTAssertEqual(err, "tensor: refusing to write \(what) to a terminal; redirect stdout to a file or pipe\n", "\(args)")
        }
    }

    func testSpecialOutputFilesAreWrittenInPlace() throws {
        // A FIFO given as -o stays a FIFO (renaming over it, as AtomicFile does for files, would
        // replace it; as root the same went for /dev/null) and receives exactly the file's bytes.
        let (images, points, dir) = try fixtures()
        for args in [["to-npy"], ["to-npy", "--first"], ["to-png", "--grid", "3x2"], ["scatter", "-"]] {
            let input = args[0] == "scatter" ? points : images
            let expected = try runTool("tensor", args, stdin: input).stdout
            let fifo = dir.appendingPathComponent("fifo").path
            XCTAssertEqual(mkfifo(fifo, 0o600), 0)
            let got = Received()
            let done = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                got.data = FileHandle(forReadingAtPath: fifo)!.readDataToEndOfFile()
                done.signal()
            }
            let r = try runTool("tensor", args + ["-o", fifo], stdin: input)
            done.wait()
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
            XCTAssertEqual(got.data, expected, "\(args)")
            var st = stat()
            XCTAssertEqual(stat(fifo, &st), 0)
            XCTAssertEqual(st.st_mode & S_IFMT, S_IFIFO, "\(args): the FIFO was replaced")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["fifo", "p.st"], "\(args): no temporary files left")
            unlink(fifo)
        }
    }

    func testTypedValuesParse() {
        XCTAssertEqual(GridSize("8x4"), GridSize(cols: 8, rows: 4))
        XCTAssertEqual(GridSize("3X2"), GridSize(cols: 3, rows: 2))
        XCTAssertEqual(GridSize("0x2"), GridSize(cols: 0, rows: 2))  // parsed; refused by the tool
        for bad in ["8", "8x", "x8", "8x8x8", "-1x2", "a x b", ""] { XCTAssertNil(GridSize(bad), bad) }
        XCTAssertEqual(SampleDims("1, 28,28")?.dims, [1, 28, 28])
        XCTAssertEqual(SampleDims("784")?.description, "784")
        XCTAssertEqual(SampleDims("2,0")?.allPositive, false)
        for bad in ["", "1,,2", "a", "-1", "1.5"] { XCTAssertNil(SampleDims(bad), bad) }
        XCTAssertEqual(BinaryOutput(nil), .stdout)
        XCTAssertEqual(BinaryOutput("-"), .stdout)
        XCTAssertEqual(BinaryOutput("a.npy"), .file("a.npy"))
        XCTAssertTrue(RawReader.fits(sampleShape: [1, 28, 28], dtype: .f32, batch: 1000))
        XCTAssertFalse(RawReader.fits(sampleShape: [1 << 40, 1 << 40], dtype: .u8, batch: 2))
    }
}

/// What the FIFO's reader thread received (read after it signals).
final class Received: @unchecked Sendable { var data = Data() }
