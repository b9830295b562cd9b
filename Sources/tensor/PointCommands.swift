// tensor toy, scatter: 2-D point sets in (ToyImport, Shared/IO/Import.swift) and out as a plot
// (ScatterExport, Shared/IO/Export.swift; without -o the PNG goes to stdout).
import ArgumentParser
import Shared

struct Toy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "toy",
        abstract: "Write a 2-D toy data set: x F32 [N,2].",
        discussion: """
        Sample i uses only RandomStream(seed, purpose toy, index i), so the data do not depend on \
        --batch. u ~ U(0,1), z ~ N(0,1); every set adds noise * (z1, z2) at the end. Definitions \
        (all roughly within [-1, 1]^2):
          \(ToyDataset.allCases.map(\.definition).joined(separator: "\n  "))
        Writes one frame of kind 'batch' (or frames of --batch samples); metadata has dataset, n, \
        seed, noise, first, count.

        Example:
          tensor toy swissroll -n 10000 --seed 1 > roll.st
        """)

    @Argument(help: "The data set.") var dataset: ToyDataset
    @Option(name: .short, help: "Number of samples.") var n: Int
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "σ of the added Gaussian noise (default per data set).") var noise: Double?
    @Option(help: "Samples per frame (default: all in one frame).") var batch: Int?

    func validate() throws {
        try check(n > 0, "-n must be positive (got \(n))")
        if let noise { try check(noise >= 0 && noise.isFinite, "--noise must be >= 0 (got \(noise))") }
        try check(batch != nil || n <= ToyImport.maxFrame,
                  "-n \(n) in one frame is over \(ToyImport.maxFrame) samples; add --batch (e.g. --batch 1000000)")
        if let batch { try check(batch > 0 && batch <= ToyImport.maxFrame, "--batch must be in 1 ... \(ToyImport.maxFrame) (got \(batch))") }
    }

    func run() throws { try ToyImport(dataset: dataset, n: n, seed: seed, noise: noise, batch: batch).run(writer: FrameWriter()) }
}

struct Scatter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scatter",
        abstract: "Plot 2-D points as a PNG: one square panel per input, side by side.",
        discussion: """
        Each input is a stream file ('-' for stdin) whose frames hold x of shape [N,2] (all frames \
        are plotted). Panels share the view [-R, R]^2 (--range; default: the largest |coordinate| \
        over all inputs times 1.05), with a light grey frame and axis lines through 0. Points are \
        2x2 dots, blue in the first panel, then orange, green, red. Points outside the view are \
        counted in a note on stderr. Writes an RGB PNG --size pixels high to -o, else to stdout.

        Example:
          tensor scatter data.st samples.st -o compare.png --size 512 --range 1.2
        """)

    @Argument(help: "Stream files with x [N,2].") var inputs: [String]
    @Option(name: .shortAndLong, help: "The PNG file to write (default: stdout).") var output: String?
    @Option(help: "Panel size in pixels.") var size: Int = 512
    @Option(help: "Half-width R of the view [-R, R]^2.") var range: Double?
    @Option(help: "Name of the tensor to plot.") var name: String = "x"

    func validate() throws {
        try check(inputs.filter { $0 == "-" }.count <= 1, "stdin ('-') can be read only once")
        try check(ScatterPlot.sizes.contains(size), "--size must be in 16 ... 8192 (got \(size))")
        if let range { try check(range > 0 && range.isFinite, "--range must be positive (got \(range))") }
    }

    func run() throws {
        try ScatterExport(inputs: inputs, name: name, size: size, range: range).run(output: BinaryOutput(output)) { warn("tensor", $0) }
    }
}
