// tensor to-png, to-npy: options -> a job of Shared/IO/Export.swift. Without -o the one output
// file goes to stdout (never to a terminal); per-sample PNGs need -o PREFIX.
import ArgumentParser
import Shared

struct ToPNG: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "to-png",
        abstract: "Write the x of a stream as PNG images: one per sample, or one grid.",
        discussion: """
        Reads frames with x of shape [N,C,H,W] (C = 1 or 3) or [N,H,W] from stdin (or FILE). \
        Pixels: p = round((clamp(x, -1, 1) + 1) / 2 * 255) (65535 with --16bit).
        Without --grid: one file per sample, numbered across the whole stream from 0: \
        PREFIX-000000.png, PREFIX-000001.png, ... (six digits, more when needed); -o PREFIX is required.
        With --grid COLSxROWS: one PNG (the file -o, else stdout) holding the first COLS*ROWS samples \
        of the stream in row-major order; later samples are ignored (a note on stderr says how many); \
        missing samples leave blank cells. --pad pixels separate the cells and border the grid \
        (white, or --background); --scale K enlarges each sample K times (nearest neighbour).

        Examples:
          tensor to-png -o out/sample < samples.st
          tensor to-png --grid 8x8 --pad 2 --scale 2 -o grid.png < samples.st
          tensor to-png --grid 8x8 < samples.st > grid.png
        """)

    @Argument(help: "Input stream (default: stdin).") var input: String?
    @Option(name: .shortAndLong, help: "PREFIX for per-sample files; with --grid the grid file (default: stdout).") var output: String?
    @Option(help: "Grid as COLSxROWS, e.g. 8x8.") var grid: GridSize?
    @Option(help: "Pixels between and around grid cells.") var pad: Int = 2
    @Option(help: "Nearest-neighbour upscaling factor.") var scale: Int = 1
    @Option(help: "Value in [-1, 1] of the padding and blank cells (1 white, -1 black).") var background: Float = 1
    @Option(help: "Name of the tensor to draw.") var name: String = "x"
    @Flag(name: .customLong("16bit"), help: "Write 16-bit PNGs (linear, tagged gamma 1.0).") var sixteen = false

    func validate() throws {
        try check(grid != nil || output != nil, "per-sample PNGs need -o PREFIX (PREFIX-000000.png, ...); only --grid writes to stdout")
        if let grid {
            try check(grid.capacity > 0, "--grid needs positive COLSxROWS (got \(grid.cols)x\(grid.rows))")
            try check(pad >= 0, "--pad must be >= 0 (got \(pad))")
        }
        try check(scale >= 1, "--scale must be >= 1 (got \(scale))")
    }

    func run() throws {
        let layout: PNGExport.Layout = grid.map { .grid($0, BinaryOutput(output)) } ?? .perSample(prefix: output!)
        try PNGExport(layout: layout, name: name, pad: pad, scale: scale, background: background, sixteenBit: sixteen)
            .run(reader: FrameReader(pathOrStdin: input)) { warn("tensor", $0) }
    }
}

struct ToNPY: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "to-npy",
        abstract: "Write one tensor of a stream as a .npy file.",
        discussion: """
        Reads frames from stdin (or FILE) and writes the tensor --name (default x) of every frame, \
        concatenated along axis 0, as one C-order .npy file (version 1.0, or 2.0 for huge headers; \
        dtype kept: <f4, <f8, <i8, <i4, |u1) to -o, else to stdout. All frames must agree in dtype \
        and in every axis but the first; frames without the tensor are an error. --first writes only \
        the first frame's tensor (any shape, scalars included). The file is written atomically, in \
        bounded memory (to stdout: once complete, through a temporary file).

        Examples:
          tensor to-npy -o samples.npy < samples.st
          tensor to-npy < samples.st > samples.npy
        """)

    @Argument(help: "Input stream (default: stdin).") var input: String?
    @Option(name: .shortAndLong, help: "The .npy file to write (default: stdout).") var output: String?
    @Option(help: "Name of the tensor to write.") var name: String = "x"
    @Flag(help: "Only the first frame's tensor.") var first = false

    func run() throws {
        try NPYExport(name: name, firstOnly: first).run(reader: FrameReader(pathOrStdin: input), output: BinaryOutput(output))
    }
}
