// Code blocks the documentation promises to work, pulled out so the tests can run them.
import Foundation
import XCTest

/// The repository root (this file is Tests/SharedTests/DocBlocks.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The body of the first ```language fenced block after `marker` in the repository file `path`.
func documentedBlock(_ path: String, after marker: String, language: String) throws -> String {
    let text = try String(contentsOf: repositoryRoot.appendingPathComponent(path), encoding: .utf8)
    guard let m = text.range(of: marker),
          let open = text.range(of: "```\(language)\n", range: m.upperBound..<text.endIndex),
          let close = text.range(of: "```", range: open.upperBound..<text.endIndex) else {
        throw DocBlockMissing(description: "no ```\(language) block after \(marker) in \(path)")
    }
    return String(text[open.upperBound..<close.lowerBound])
}

struct DocBlockMissing: Error, CustomStringConvertible { let description: String }
