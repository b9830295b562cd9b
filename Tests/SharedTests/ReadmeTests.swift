// The README's pipeline examples are run as written, so the README stays true.
import Foundation
import XCTest
@testable import Shared

final class ReadmeTests: XCTestCase {
    /// The ```sh block after `<!-- tested-pipelines -->` in README.md.
    func pipelineBlock() throws -> String {
        try documentedBlock("README.md", after: "<!-- tested-pipelines -->", language: "sh")
    }

    func testPipelinesRunAsWritten() throws {
        let script = try pipelineBlock()
        XCTAssertTrue(script.contains("noise"), "the block should hold the README's pipelines")
        let dir = temporaryDirectory()
        // a.png: a 28x28 gray gradient image, for the PNG pipelines.
        var pixels = [UInt8](repeating: 0, count: 28 * 28)
        for i in 0..<pixels.count { pixels[i] = UInt8((i % 28 + i / 28) * 255 / 54) }
        try PNG.write8(path: dir.appendingPathComponent("a.png").path, width: 28, height: 28, channels: 1, pixels: pixels)
        // data/: the repository's data folder (the sample-quality pipeline reads MNIST digits from it).
        try FileManager.default.createSymbolicLink(at: dir.appendingPathComponent("data"), withDestinationURL: repositoryRoot.appendingPathComponent("data"))
        // No pipefail: `schedule ... | head` ends schedule with SIGPIPE, as it does for a user.
        // A failing tool is caught by its one-line message on stderr (checked empty below).
        let r = try runBash(["-c", "set -eu\n" + script], in: dir)
        let outText = String(decoding: r.stdout, as: UTF8.self), errText = r.stderr
        XCTAssertEqual(r.status, 0, "README pipelines failed:\n\(errText)")
        XCTAssertEqual(errText, "", "a README pipeline reported an error")
        // What the commands must have produced.
        XCTAssertTrue(outText.hasPrefix("t\tbeta\talpha\talpha_bar"), "schedule --text header")
        XCTAssertTrue(outText.contains("[1000,2]"), "tensor info shows the moons batch")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertTrue(files.contains { $0.hasPrefix("out") && $0.hasSuffix(".png") }, "to-png wrote \(files)")
        XCTAssertTrue(files.contains("xt.st"))
        XCTAssertTrue(files.contains("moons0.st") && files.contains { $0.hasPrefix("inpainted") && $0.hasSuffix(".png") }, "inversion and inpainting wrote \(files)")
        // evaluate's table: one line per figure, the noised digits against the clean ones.
        for figure in ["fd-features", "fd-logits", "is", "precision", "recall"] {
            XCTAssertTrue(outText.contains("\n" + figure + " "), "evaluate printed \(figure):\n\(outText)")
        }
    }
}
