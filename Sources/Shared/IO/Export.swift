// Streams out of the stream format: the jobs behind `tensor to-png`, `to-npy` and `scatter`.
// Each is built from typed values; `run` reads the frames, checks every one against the
// first, and writes a file (or stdout, refused when it is a terminal). Remarks meant for
// stderr go to `note`. Errors name frames and values, never command-line flags.
import Foundation

extension FrameReader {
    /// Frames from the file at `path`, or from stdin when `path` is nil or "-".
    public convenience init(pathOrStdin path: String?) throws {
        if let path, path != "-" { try self.init(path: path) } else { self.init() }
    }
}

/// The `name` tensor of every frame as PNG images: one file per sample, or one grid.
public struct PNGExport: Sendable {
    public enum Layout: Sendable, Equatable {
        /// PREFIX-000000.png, PREFIX-000001.png, ..., numbered across the whole stream.
        case perSample(prefix: String)
        /// The stream's first cols*rows samples in one image, row-major; later samples are ignored.
        case grid(GridSize, BinaryOutput)
    }
    public var layout: Layout
    public var name: String
    /// Pixels between and around grid cells.
    public var pad: Int
    /// Nearest-neighbour upscaling factor.
    public var scale: Int
    /// Value in [-1, 1] of the padding and blank cells.
    public var background: Float
    public var sixteenBit: Bool

    public init(layout: Layout, name: String = "x", pad: Int = 2, scale: Int = 1, background: Float = 1, sixteenBit: Bool = false) {
        self.layout = layout; self.name = name; self.pad = pad; self.scale = scale
        self.background = background; self.sixteenBit = sixteenBit
    }

    public func run(reader: FrameReader, note: (String) -> Void = { _ in }) throws {
        switch layout {
        case .perSample(let prefix): try writeEach(reader, prefix: prefix)
        case .grid(let size, let output):
            try output.checkNotTerminal("a PNG image")
            try writeGrid(reader, size: size, output: output, note: note)
        }
    }

    /// The image geometry of frame `frame`'s tensor; errors name the frame.
    func shape(_ frame: Frame, number: Int) throws -> (Tensor, ImageShape) {
        let x = try frame.require(name)
        do { return (x, try ImageShape(x)) } catch let e as DDPMError { throw DDPMError("frame \(number): \(e.message)") }
    }

    func writeEach(_ reader: FrameReader, prefix: String) throws {
        guard scale >= 1 else { throw DDPMError("the scale must be >= 1 (got \(scale))") }
        var index = 0
        while let frame = try reader.next() {
            let (x, shape) = try shape(frame, number: reader.framesRead)
            let data = x.floats
            for i in 0..<shape.count {
                var g = try ImageGrid(cols: 1, rows: 1, image: shape, pad: 0, scale: scale, sixteenBit: sixteenBit)
                data.withUnsafeBufferPointer { g.place(0, sample: UnsafeBufferPointer(rebasing: $0[(i * shape.sampleSize)..<((i + 1) * shape.sampleSize)])) }
                try g.write(path: prefix + "-" + String(format: "%06d", index) + ".png")
                index += 1
            }
        }
        if index == 0 { throw DDPMError("no samples in the input stream") }
    }

    func writeGrid(_ reader: FrameReader, size: GridSize, output: BinaryOutput, note: (String) -> Void) throws {
        var canvas: ImageGrid? = nil
        var seen = 0
        while let frame = try reader.next() {
            let (x, shape) = try shape(frame, number: reader.framesRead)
            if canvas == nil {
                canvas = try ImageGrid(cols: size.cols, rows: size.rows, image: shape, pad: pad, scale: scale, background: background, sixteenBit: sixteenBit)
            }
            guard let g = canvas, g.image.channels == shape.channels, g.image.height == shape.height, g.image.width == shape.width else {
                throw DDPMError("frame \(reader.framesRead): image size differs from the first frame's")
            }
            let take = max(0, min(shape.count, g.capacity - seen))
            if take > 0 {
                let data = x.floats
                data.withUnsafeBufferPointer { buf in
                    for i in 0..<take {
                        canvas!.place(seen + i, sample: UnsafeBufferPointer(rebasing: buf[(i * shape.sampleSize)..<((i + 1) * shape.sampleSize)]))
                    }
                }
            }
            seen += shape.count
        }
        guard let g = canvas else { throw DDPMError("no samples in the input stream") }
        if seen > g.capacity { note("note: grid holds \(g.capacity) samples; ignored the remaining \(seen - g.capacity)") }
        try g.write(to: output)
    }
}

/// The `name` tensor of every frame, concatenated along axis 0, as one C-order .npy file
/// (bounded memory); or only the first frame's tensor (any shape).
public struct NPYExport: Sendable {
    public var name: String
    public var firstOnly: Bool

    public init(name: String = "x", firstOnly: Bool = false) {
        self.name = name; self.firstOnly = firstOnly
    }

    public func run(reader: FrameReader, output: BinaryOutput) throws {
        try output.checkNotTerminal(".npy data")
        if firstOnly {
            guard let f = try reader.next() else { throw DDPMError("empty input stream") }
            return try output.write(NPY.serialize(try f.require(name)))
        }
        let w = try NPYStreamWriter(output: output)
        while let f = try reader.next() {
            do { try w.append(try f.require(name), what: "frame \(reader.framesRead)") }
            catch let e as DDPMError where !e.message.hasPrefix("frame") { throw DDPMError("frame \(reader.framesRead): \(e.message)") }
        }
        guard w.dtype != nil else { throw DDPMError("empty input stream") }
        try w.finish()
    }
}

/// 2-D points (`name` of shape [N,2] in every frame) of each input stream as one panel of a
/// scatter plot, all panels sharing the view [-R, R]^2.
public struct ScatterExport: Sendable {
    /// Stream files; "-" (at most once) is stdin.
    public var inputs: [String]
    public var name: String
    /// Panel size in pixels (ScatterPlot.sizes).
    public var size: Int
    /// R; nil: the largest finite |coordinate| over all inputs times 1.05 (1 when all are 0).
    public var range: Double?

    public init(inputs: [String], name: String = "x", size: Int = 512, range: Double? = nil) {
        self.inputs = inputs; self.name = name; self.size = size; self.range = range
    }

    public func run(output: BinaryOutput, note: (String) -> Void = { _ in }) throws {
        try output.checkNotTerminal("a PNG image")
        guard !inputs.isEmpty else { throw DDPMError("no input streams given") }
        guard inputs.filter({ $0 == "-" }).count <= 1 else { throw DDPMError("stdin ('-') can be read only once") }
        var sets: [[Float]] = []
        for path in inputs {
            let reader = try FrameReader(pathOrStdin: path)
            var pts: [Float] = []
            while let f = try reader.next() {
                let x = try f.require(name)
                guard x.shape.count == 2, x.shape[1] == 2 else {
                    throw DDPMError("\(path): frame \(reader.framesRead): \(name) has shape \(x.shape); scatter needs [N,2]")
                }
                pts += x.floats
            }
            sets.append(pts)
        }
        let r: Double
        if let range { r = range } else {
            let m = sets.joined().reduce(Float(0)) { $1.isFinite ? max($0, abs($1)) : $0 }
            r = m > 0 ? Double(m) * 1.05 : 1
        }
        var plot = try ScatterPlot(panels: sets.count, size: size, range: r)
        var outside = 0
        for (i, s) in sets.enumerated() { outside += plot.plot(panel: i, points: s).outside }
        if outside > 0 { note("note: \(outside) point(s) outside the view [-\(r), \(r)]^2 were not drawn") }
        try plot.write(to: output)
    }
}
