// Test helpers: locating and running the built tools, temporary files.
import Foundation
import XCTest
@testable import Shared

/// The folder holding the built executables (next to the test bundle).
let productsDirectory: URL = {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    for b in Bundle.allBundles where b.bundlePath.hasSuffix(".xctest") {
        url = b.bundleURL
    }
    // .../release/ddpmPackageTests.xctest -> .../release
    while url.pathComponents.count > 1 && !FileManager.default.fileExists(atPath: url.appendingPathComponent("schedule").path) {
        url = url.deletingLastPathComponent()
    }
    return url
}()

struct RunResult {
    var status: Int32
    var stdout: Data
    var stderr: String
}

/// Runs a built tool (`schedule`, `noise`, ...) with arguments and optional stdin bytes: the
/// guarded run below without its address-space limit, and a timeout long enough for any test's
/// training run, so that a hang fails the test instead of stalling the suite.
@discardableResult
func runTool(_ name: String, _ args: [String], stdin: Data? = nil, stdinFile: String? = nil,
             timeout: Double = 900) throws -> RunResult {
    let r = try runToolGuarded(name, args, stdin: stdin, stdinFile: stdinFile, timeout: timeout, memoryLimit: nil)
    if r.timedOut { XCTFail("\(name) \(args.joined(separator: " ")): no exit within \(Int(timeout)) s") }
    return RunResult(status: r.status, stdout: r.stdout, stderr: r.stderr)
}

extension XCTestCase {
    /// Runs a tool that must succeed; its stdout.
    func run(_ tool: String, _ args: [String], stdin: Data? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> Data {
        let r = try runTool(tool, args, stdin: stdin)
        XCTAssertEqual(r.status, 0, "\(tool) \(args): \(r.stderr)", file: file, line: line)
        return r.stdout
    }

    /// Runs a tool that must fail with one line on stderr, prefixed by the tool, holding `expect`.
    func fails(_ tool: String, _ args: [String], stdin: Data? = nil, _ expect: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try runTool(tool, args, stdin: stdin)
        XCTAssertEqual(r.status, 1, "\(args) should fail; stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line expected: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("\(tool): ") && r.stderr.contains(expect), "'\(expect)' not in: \(r.stderr)", file: file, line: line)
    }
}

/// Runs /bin/bash with `arguments` (a script file, or "-c" and a script) in `directory`, the built
/// tools first on PATH; stdout and stderr are drained concurrently.
func runBash(_ arguments: [String], in directory: URL? = nil) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = arguments
    if let directory { p.currentDirectoryURL = directory }
    var env = ProcessInfo.processInfo.environment
    env["PATH"] = productsDirectory.path + ":" + (env["PATH"] ?? "/usr/bin:/bin")
    p.environment = env
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    var outData = Data(), errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.wait()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: outData, stderr: String(decoding: errData, as: UTF8.self))
}

/// A fresh temporary directory for one test.
func temporaryDirectory() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("ddpm-test-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Serialises frames to bytes, as a tool would write them.
func encode(_ frames: [Frame]) throws -> Data {
    let dir = temporaryDirectory()
    let path = dir.appendingPathComponent("f.st").path
    try Frame.save(frames, path: path)
    return try Data(contentsOf: URL(fileURLWithPath: path))
}

/// Parses tool output back into frames.
func decode(_ data: Data) throws -> [Frame] {
    let dir = temporaryDirectory()
    let path = dir.appendingPathComponent("f.st").path
    try data.write(to: URL(fileURLWithPath: path))
    return try Frame.loadAll(path: path)
}

/// How a guarded tool run ended.
struct GuardedResult {
    /// The exit status (when `signal` is nil and the run did not time out).
    var status: Int32
    /// The signal that ended the process (a trap, an abort, SIGKILL after the timeout).
    var signal: Int32?
    var timedOut: Bool
    var stdout: Data
    var stderr: String

    /// A crash, a hang or a status outside 0 ... 125 (126 and up: shells' and signals' codes).
    var abnormal: Bool { signal != nil || timedOut || status > 125 }

    /// One word for reports: "exit 1", "signal 6", "timeout".
    var outcome: String { timedOut ? "timeout" : signal.map { "signal \($0)" } ?? "exit \(status)" }
}

/// Runs a built tool bounded in time and address space (prlimit --as; a huge allocation fails
/// at once instead of swapping; nil: no limit), without the runtime's backtracer (a crash ends quickly).
/// `stdoutPath`/`stderrPath` send the streams to a file such as /dev/full instead of a pipe.
func runToolGuarded(_ name: String, _ args: [String], stdin: Data? = nil, stdinFile: String? = nil,
                    stdoutPath: String? = nil, stderrPath: String? = nil,
                    timeout: Double = 60, memoryLimit: Int? = 4 << 30) throws -> GuardedResult {
    let p = Process()
    let tool = productsDirectory.appendingPathComponent(name).path
    if let memoryLimit, FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit") {
        p.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        p.arguments = ["--as=\(memoryLimit)", "--", tool] + args
    } else {
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
    }
    var env = ProcessInfo.processInfo.environment
    env["SWIFT_BACKTRACE"] = "enable=no"
    p.environment = env
    let out = Pipe(), err = Pipe()
    if let stdoutPath {
        guard let h = FileHandle(forWritingAtPath: stdoutPath) else { throw DDPMError("cannot open \(stdoutPath)") }
        p.standardOutput = h
    } else {
        p.standardOutput = out
    }
    if let stderrPath {
        guard let h = FileHandle(forWritingAtPath: stderrPath) else { throw DDPMError("cannot open \(stderrPath)") }
        p.standardError = h
    } else {
        p.standardError = err
    }
    var inPipe: Pipe? = nil
    if let stdinFile {
        p.standardInput = FileHandle(forReadingAtPath: stdinFile)
    } else if stdin != nil {
        inPipe = Pipe()
        p.standardInput = inPipe
    } else {
        p.standardInput = FileHandle.nullDevice
    }
    try p.run()
    let lock = NSLock()
    var timedOut = false
    let pid = p.processIdentifier
    let watchdog = DispatchWorkItem {
        lock.lock(); timedOut = true; lock.unlock()
        kill(pid, SIGKILL)
    }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
    var outData = Data(), errData = Data()
    let group = DispatchGroup()
    if stdoutPath == nil {
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    }
    if stderrPath == nil {
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    }
    if let inPipe, let stdin {
        signal(SIGPIPE, SIG_IGN)
        try? inPipe.fileHandleForWriting.write(contentsOf: stdin)
        try? inPipe.fileHandleForWriting.close()
    }
    p.waitUntilExit()
    watchdog.cancel()
    group.wait()
    lock.lock(); let late = timedOut; lock.unlock()
    let signalled = p.terminationReason == .uncaughtSignal
    return GuardedResult(status: signalled ? 128 + p.terminationStatus : p.terminationStatus,
                         signal: signalled && !late ? p.terminationStatus : nil, timedOut: late,
                         stdout: outData, stderr: String(decoding: errData, as: UTF8.self))
}
