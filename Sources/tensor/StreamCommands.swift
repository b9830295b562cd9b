// tensor info, reshape: options -> InfoText.printStreams (Stats.swift), Reshape.run (Reshape.swift).
import ArgumentParser
import Shared

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Describe every frame of a stream: kind, metadata, and per tensor dtype, shape, min, max, mean, std.",
        discussion: """
        Reads any stream from stdin (or FILEs, one after another) and prints, per frame, its \
        number, kind and metadata, then one aligned row per tensor (std is the population standard \
        deviation; '-' for empty tensors). Frame by frame, in bounded memory. A malformed frame stops \
        with one line on stderr naming the frame number and the problem.

        Example:
          tensor toy moons -n 1000 --seed 0 | tensor info
        """)

    @Argument(help: "Stream files (default: stdin).") var files: [String] = []

    func run() throws { try InfoText.printStreams(files) }
}

struct ReshapeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reshape",
        abstract: "Reshape named tensors per sample: [N, ...] -> [N] + SHAPE (element order kept).",
        discussion: """
        Reads a stream on stdin and writes it to stdout with every tensor named in --names \
        (default x, eps, x0_pred) reshaped to [N] + --shape, N its first axis; the number of \
        elements per sample must match. Tensors not named, frames without them (e.g. schedule \
        frames) and metadata pass through unchanged. Frame by frame, in bounded memory.

        Examples:
          tensor from-idx images.gz labels.gz | tensor reshape --shape 784 > flat.st
          denoise --model mlp.st -n 64 | tensor reshape --shape 1,28,28 | tensor to-png --grid 8x8 -o g.png
        """)

    @Option(help: "Shape of one sample, comma-separated, e.g. 784 or 1,28,28.") var shape: SampleDims
    @Option(help: "Comma-separated tensor names to reshape.") var names: String = "x,eps,x0_pred"

    var list: [String] { names.split(separator: ",").map { String($0) } }

    func validate() throws {
        try check(shape.allPositive, "--shape must be positive sizes separated by commas, e.g. 1,28,28 (got '\(shape)')")
        try check(!list.isEmpty, "--names must name at least one tensor")
    }

    func run() throws { try Reshape.run(names: list, shape: shape.dims, reader: FrameReader(), writer: FrameWriter()) }
}
