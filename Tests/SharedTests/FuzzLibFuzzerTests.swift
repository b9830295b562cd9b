// Coverage-guided fuzzing with libFuzzer (swiftc -sanitize=fuzzer,address) of the stream format
// and the importers: Sources/Shared/Format, IO and Random compiled apart from the package, with
// checks on (-Onone here: it builds in half the time of -O; not the package's -Ounchecked), so
// that an overflow or an out-of-bounds index traps (and ASan sees memory errors) instead of
// wrapping silently. The harness below reads every input as a stream
// (tensor info's text, a write/read round trip, Batch), a .npy file, an IDX file (gzip too) or a
// reshape, picked by the first byte; every outcome must be a value or a one-line DDPMError.
//
// The run is bounded: DDPM_LIBFUZZER_SECONDS (default 30; 0 skips it). A toolchain without
// -sanitize=fuzzer (or without libpng's headers) skips it with a note. A crash fails the test and
// names the input libFuzzer saved; replay it with `<binary> <input>` (the path of the binary is
// printed too). The same harness by hand, for a long run (-O: faster executions):
//   swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name Shared -I Sources/CPNG -I Sources/CZlib \
//     $(pkg-config --cflags-only-I libpng | sed 's/-I/-Xcc -I/g') Sources/Shared/{Format,IO,Random}/*.swift \
//     harness.swift -lpng16 -lz -o fuzz-shared && ./fuzz-shared -max_total_time=600 corpus/
import Foundation
import XCTest
@testable import Shared

final class FuzzLibFuzzerTests: XCTestCase {
    static let harness = #"""
    #if canImport(Glibc)
    import Glibc
    #endif

    public let toolkitVersion = "libfuzzer"

    func check(_ ok: Bool, _ what: String) { if !ok { fatalError(what) } }

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
        guard size > 0 else { return 0 }
        let which = data[0] % 4
        let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
        do {
            switch which {
            case 0, 3:
                var fds: [Int32] = [0, 0]
                guard pipe(&fds) == 0 else { return 0 }
                _ = fcntl(fds[1], 1031, 1 << 20)   // F_SETPIPE_SZ: inputs up to 1 MiB fit
                _ = bytes.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
                close(fds[1])
                defer { close(fds[0]) }
                let reader = FrameReader(fd: fds[0], name: "fuzz")
                var n = 0
                while n < 64, let f = try reader.next() {
                    n += 1
                    let text = InfoText.describe(f, number: n)
                    check(!text.unicodeScalars.contains(where: { $0.needsTerminalEscape && $0 != "\n" }), "control characters in tensor info")
                    for s in f.names + f.metadata.keys.filter({ $0 != "kind" }) + f.metadata.values where !s.isEmpty { check(text.contains(s.escapedForTerminal), "tensor info cut a name") }
                    let (meta, entries, _) = try Safetensors.parseHeader(Safetensors.header(for: f))
                    check(meta == f.metadata && entries.map(\.name) == f.names, "header round trip")
                    var conditional = BatchRules(sampleShape: [2], timesteps: true, T: 1000, classes: 3)
                    conditional.allowNull = true
                    for rules in [BatchRules(), conditional, BatchRules(sampleShape: [0])] {
                        if let b = try? Batch(frame: f, index: n, rules: rules) {
                            check(b.sampleSize > 0 && b.x.count == b.count * b.sampleSize && b.x.allSatisfy(\.isFinite), "Batch accepted bad x")
                        }
                    }
                    if which == 3 { _ = try? Reshape.apply(f, names: ["x", "y"], shape: [2, 2]) }
                }
            case 1:
                let t = try NPY.parse(bytes, name: "fuzz.npy")
                check(t.shape.allSatisfy { $0 < 1 << 40 } && t.count < 1 << 40, ".npy shape no frame can hold")
                var f = Frame()
                f["x"] = t
                _ = try Safetensors.parseHeader(Safetensors.header(for: f))
            default:
                let a = try IDX.parse(bytes, name: "fuzz.idx")
                check(a.bytes.count == a.count * a.type.size, "IDX size")
                if a.dims.count >= 2, a.count > 0, a.count < 1 << 20 { _ = IDX.images(a, range: 0 ..< a.dims[0]) }
                if a.dims.count == 1, a.count < 1 << 20 { _ = IDX.labels(a, range: 0 ..< a.dims[0]) }
            }
        } catch let e as DDPMError {
            check(!e.message.isEmpty && !e.message.unicodeScalars.contains(where: { $0.needsTerminalEscape }), "error message not one line")
        } catch {
            fatalError("foreign error \(error)")
        }
        return 0
    }
    """#

    /// Runs `command` through /bin/sh; returns the exit status and the combined output.
    func shell(_ command: String, in dir: URL) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        p.currentDirectoryURL = dir
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Seeds: frames of every kind the tools exchange (selector 0 and 3), .npy files (1), IDX files (2).
    func writeSeeds(to dir: URL) throws {
        var seeds: [[UInt8]] = []
        for f in FuzzTests.dataFrames() {
            let b = Array(try encode([f]))
            seeds.append([0] + b)
            seeds.append([3] + b)
        }
        seeds.append([0] + Array(try encode(FuzzTests.dataFrames())))
        seeds.append([1] + NPY.serialize(Tensor((0..<12).map { Float($0) }, shape: [3, 4])))
        seeds.append([1] + NPY.serialize(Tensor([Int64](), shape: [2, 0, 3])))
        seeds.append([1] + NPY.serialize(Tensor([Double(1.5)], shape: [])))
        var fortran = NPY.serialize(Tensor((0..<6).map { Int32($0) }, shape: [2, 3]))
        if let r = fortran.firstRange(of: Array("'fortran_order': False".utf8)) {
            fortran.replaceSubrange(r, with: Array("'fortran_order': True ".utf8))
        }
        seeds.append([1] + fortran)
        let idx = IDX.serialize(IDXArray(type: .u8, dims: [2, 2, 3], bytes: [UInt8](repeating: 7, count: 12)))
        seeds.append([2] + idx)
        seeds.append([2] + (try Gzip.compress(idx)))
        seeds.append([2] + IDX.serialize(IDXArray(type: .u8, dims: [4], bytes: [0, 1, 2, 3])))
        for (k, s) in seeds.enumerated() { try Data(s).write(to: dir.appendingPathComponent("seed-\(k)")) }
    }

    func testLibFuzzerFormatAndImporters() throws {
        let seconds = ProcessInfo.processInfo.environment["DDPM_LIBFUZZER_SECONDS"].flatMap(Int.init) ?? 30
        guard seconds > 0 else { print("libFuzzer: skipped (DDPM_LIBFUZZER_SECONDS=0)"); return }
        let dir = temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus"), seeds = dir.appendingPathComponent("seeds")
        try FileManager.default.createDirectory(at: corpus, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: seeds, withIntermediateDirectories: true)
        try writeSeeds(to: seeds)
        try FuzzLibFuzzerTests.harness.write(to: dir.appendingPathComponent("harness.swift"), atomically: true, encoding: .utf8)
        let src = repositoryRoot.appendingPathComponent("Sources").path
        let compile = """
            swiftc -Onone -sanitize=fuzzer,address -parse-as-library -module-name Shared -suppress-warnings \
              -I '\(src)/CPNG' -I '\(src)/CZlib' $(pkg-config --cflags-only-I libpng 2>/dev/null | sed 's/-I/-Xcc -I/g') \
              '\(src)'/Shared/Format/*.swift '\(src)'/Shared/IO/*.swift '\(src)'/Shared/Random/*.swift harness.swift \
              -lpng16 -lz -o fuzz-shared 2>&1 | grep -v 'Cannot export local symbol'; test -x fuzz-shared
            """
        // A toolchain without libFuzzer skips this test (the in-process fuzzer, FuzzTests, still runs);
        // a harness that does not build with a working libFuzzer is a failure.
        let probe = #"@_cdecl("LLVMFuzzerTestOneInput") public func f(_ d: UnsafePointer<UInt8>, _ n: Int) -> CInt { 0 }"#
        try probe.write(to: dir.appendingPathComponent("probe.swift"), atomically: true, encoding: .utf8)
        let (ps, plog) = try shell("swiftc -sanitize=fuzzer -parse-as-library probe.swift -o probe 2>&1", in: dir)
        guard ps == 0 else {
            print("libFuzzer: skipped, this toolchain cannot build with -sanitize=fuzzer (\(plog.split(separator: "\n").first ?? ""))")
            return
        }
        let start = Date()
        let (cs, clog) = try shell(compile, in: dir)
        guard cs == 0 else {
            return XCTFail("the libFuzzer harness does not build (Format, IO and Random must build on their own):\n\(clog.prefix(3000))")
        }
        let built = Date().timeIntervalSince(start)
        let run = "./fuzz-shared -max_total_time=\(seconds) -max_len=65536 -rss_limit_mb=3072 -timeout=20 -print_final_stats=1 " +
                  "-artifact_prefix='\(dir.path)/crash-' corpus seeds"
        let (rs, log) = try shell(run, in: dir)
        let lines = log.split(separator: "\n")
        let executions = lines.first { $0.hasPrefix("stat::number_of_executed_units:") }.map { $0.split(separator: " ").last.map(String.init) ?? "?" } ?? "?"
        let coverage = lines.last { $0.contains(" cov: ") }.flatMap { l in l.range(of: "cov: ").map { String(l[$0.upperBound...].prefix(while: { $0 != " " })) } } ?? "?"
        let found = (try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.filter { $0.hasPrefix("crash-") } ?? []
        print("libFuzzer (Format, IO, checked build with ASan): \(executions) executions in \(seconds) s (built in \(Int(built)) s), " +
              "\(coverage) edges covered, corpus of \((try? FileManager.default.contentsOfDirectory(atPath: corpus.path).count) ?? 0) inputs, \(found.count) crash(es)")
        if rs != 0 || !found.isEmpty {
            XCTFail("libFuzzer found a crash (status \(rs)); inputs: \(found.map { dir.appendingPathComponent($0).path }); " +
                    "replay: \(dir.appendingPathComponent("fuzz-shared").path) INPUT\n" + lines.suffix(40).joined(separator: "\n"))
        }
    }
}
