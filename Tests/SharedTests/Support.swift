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

/// Runs a built tool (`schedule`, `noise`, ...) with arguments and optional stdin bytes.
@discardableResult
func runTool(_ name: String, _ args: [String], stdin: Data? = nil, stdinFile: String? = nil) throws -> RunResult {
    let p = Process()
    p.executableURL = productsDirectory.appendingPathComponent(name)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
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
    // Feed stdin and drain stdout/stderr concurrently so no pipe fills up.
    var outData = Data(), errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    if let inPipe, let stdin {
        signal(SIGPIPE, SIG_IGN)
        try? inPipe.fileHandleForWriting.write(contentsOf: stdin)
        try? inPipe.fileHandleForWriting.close()
    }
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
