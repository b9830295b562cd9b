// tensor: data in and out of the stream format (PNG, IDX, NPY, raw, toy sets),
// `info` on any stream, and scatter plots. All logic lives in Shared/IO.
import ArgumentParser
import Foundation
import Shared

@main
struct TensorTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tensor",
        abstract: "Convert data to and from tensor streams, describe streams, plot 2-D points.",
        discussion: """
        Streams are safetensors frames back to back (docs/FORMAT.md); data frames have kind 'batch' \
        and hold x (F32, [N,C,H,W] images in [-1,1] or [N,D] vectors) and optionally y (I64 labels).

        Examples:
          tensor from-idx train-images.gz train-labels.gz > mnist.st
          tensor toy swissroll -n 10000 --seed 1 > roll.st
          tensor info < mnist.st
          tensor to-png --grid 8x8 -o grid.png < samples.st
        """,
        version: toolkitVersion,
        subcommands: [FromPNG.self, ToPNG.self, FromIDX.self, FromNPY.self, ToNPY.self, FromRaw.self,
                      Info.self, Toy.self, Scatter.self, ReshapeCommand.self])

    static func main() { runTool() }
}

/// Metadata of a data frame made by `tensor <sub>`.
func batchMetadata(_ sub: String, _ extra: [String: String]) -> [String: String] {
    var m = extra
    m["kind"] = "batch"
    m["tool"] = "tensor \(sub)"
    m["version"] = toolkitVersion
    return m
}

/// Frames from FILE, or stdin when FILE is nil or "-".
func openStream(_ path: String?) throws -> FrameReader {
    if let path, path != "-" { return try FrameReader(path: path) }
    return FrameReader()
}

func parseShape(_ s: String, what: String) throws -> [Int] {
    let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! > 0 }) else {
        throw DDPMError("\(what) must be positive sizes separated by commas, e.g. 1,28,28 (got '\(s)')")
    }
    return parts.map { $0! }
}

// MARK: from-png

struct FromPNG: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "from-png",
        abstract: "Read PNG files into one frame: x F32 [N,C,H,W] in [-1,1].",
        discussion: """
        Reads 8- or 16-bit gray, RGB, RGBA, gray+alpha or palette PNGs (libpng simplified API). \
        All files must share width, height and channel count (C = 1 for gray, 3 for colour; \
        palette files count as colour). Scaling: x = p / 255 * 2 - 1 (16-bit: p / 65535 * 2 - 1). \
        Alpha is removed by compositing onto black (x = colour * alpha, in linear light), as libpng does. \
        8-bit files are delivered sRGB-encoded (files with another gAMA are converted by libpng). \
        16-bit files are read as libpng's linear values: untagged files (and files from to-png --16bit) \
        keep their stored values; 16-bit files tagged sRGB are converted to linear light. \
        Writes one frame of kind 'batch' with x; metadata lists the files.

        Example:
          tensor from-png --gray digits/*.png > digits.st
        """)

    @Argument(help: "PNG files, in order (sample i is file i).") var files: [String]
    @Flag(help: "Convert every file to gray (C = 1; libpng's sRGB luminance).") var gray = false
    @Flag(help: "Convert every file to RGB (C = 3).") var rgb = false

    func run() throws {
        guard !(gray && rgb) else { throw DDPMError("--gray and --rgb exclude each other") }
        guard !files.isEmpty else { throw DDPMError("no PNG files given") }
        let writer = try FrameWriter()
        let mode: PNG.ChannelMode = gray ? .gray : rgb ? .rgb : .asStored
        let first = try PNG.read(path: files[0], mode: mode)
        let per = first.data.count
        var x = [Float](repeating: 0, count: per * files.count)
        for (i, f) in files.enumerated() {
            let img = i == 0 ? first : try PNG.read(path: f, mode: mode)
            guard img.width == first.width, img.height == first.height, img.channels == first.channels else {
                throw DDPMError("\(f): \(img.width)x\(img.height) with \(img.channels) channel(s) differs from \(files[0]): \(first.width)x\(first.height) with \(first.channels) (use --gray or --rgb to force channels)")
            }
            x.replaceSubrange(i * per ..< (i + 1) * per, with: img.data)
        }
        var frame = Frame(metadata: batchMetadata("from-png", [
            "files": files.joined(separator: ","), "count": String(files.count),
            "channels": mode == .asStored ? "as stored" : gray ? "gray" : "rgb",
            "scaling": "x = p / max * 2 - 1; alpha composited onto black"]))
        frame["x"] = Tensor(x, shape: [files.count, first.channels, first.height, first.width])
        try writer.write(frame)
    }
}

// MARK: to-png

struct ToPNG: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "to-png",
        abstract: "Write the x of a stream as PNG images: one per sample, or one grid.",
        discussion: """
        Reads frames with x of shape [N,C,H,W] (C = 1 or 3) or [N,H,W] from stdin (or FILE). \
        Pixels: p = round((clamp(x, -1, 1) + 1) / 2 * 255) (65535 with --16bit).
        Without --grid: one file per sample, numbered across the whole stream from 0: \
        PREFIX-000000.png, PREFIX-000001.png, ... (six digits, more when needed).
        With --grid COLSxROWS: one file (-o is its path) holding the first COLS*ROWS samples of the \
        stream in row-major order; later samples are ignored (a note on stderr says how many); \
        missing samples leave blank cells. --pad pixels separate the cells and border the grid \
        (white, or --background); --scale K enlarges each sample K times (nearest neighbour).

        Examples:
          tensor to-png -o out/sample < samples.st
          tensor to-png --grid 8x8 --pad 2 --scale 2 -o grid.png < samples.st
        """)

    @Argument(help: "Input stream (default: stdin).") var input: String?
    @Option(name: .shortAndLong, help: "PREFIX for per-sample files, or the grid file with --grid.") var output: String
    @Option(help: "Grid as COLSxROWS, e.g. 8x8.") var grid: String?
    @Option(help: "Pixels between and around grid cells.") var pad: Int = 2
    @Option(help: "Nearest-neighbour upscaling factor.") var scale: Int = 1
    @Option(help: "Value in [-1, 1] of the padding and blank cells (1 white, -1 black).") var background: Float = 1
    @Option(help: "Name of the tensor to draw.") var name: String = "x"
    @Flag(name: .customLong("16bit"), help: "Write 16-bit PNGs (linear, tagged gamma 1.0).") var sixteen = false

    func run() throws {
        let reader = try openStream(input)
        if let grid { try writeGrid(reader, spec: grid) } else { try writeEach(reader) }
    }

    func writeEach(_ reader: FrameReader) throws {
        guard scale >= 1 else { throw DDPMError("--scale must be >= 1") }
        var index = 0
        while let frame = try reader.next() {
            let x = try frame.require(name)
            let shape: ImageShape
            do { shape = try ImageShape(x) } catch let e as DDPMError { throw DDPMError("frame \(reader.framesRead): \(e.message)") }
            let data = x.floats
            for i in 0..<shape.count {
                var g = try ImageGrid(cols: 1, rows: 1, image: shape, pad: 0, scale: scale, sixteenBit: sixteen)
                data.withUnsafeBufferPointer { g.place(0, sample: UnsafeBufferPointer(rebasing: $0[(i * shape.sampleSize)..<((i + 1) * shape.sampleSize)])) }
                try g.write(path: output + "-" + String(format: "%06d", index) + ".png")
                index += 1
            }
        }
        if index == 0 { throw DDPMError("no samples in the input stream") }
    }

    func writeGrid(_ reader: FrameReader, spec: String) throws {
        let parts = spec.lowercased().split(separator: "x").map { Int($0) }
        guard parts.count == 2, let cols = parts[0], let rows = parts[1] else {
            throw DDPMError("--grid must be COLSxROWS, e.g. 8x8 (got '\(spec)')")
        }
        var canvas: ImageGrid? = nil
        var seen = 0
        while let frame = try reader.next() {
            let x = try frame.require(name)
            let shape: ImageShape
            do { shape = try ImageShape(x) } catch let e as DDPMError { throw DDPMError("frame \(reader.framesRead): \(e.message)") }
            if canvas == nil {
                canvas = try ImageGrid(cols: cols, rows: rows, image: shape, pad: pad, scale: scale, background: background, sixteenBit: sixteen)
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
        if seen > g.capacity { warn("tensor", "note: grid holds \(g.capacity) samples; ignored the remaining \(seen - g.capacity)") }
        try g.write(path: output)
    }
}

// MARK: from-idx

struct FromIDX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "from-idx",
        abstract: "Read MNIST-style IDX files into frames of x (and y).",
        discussion: """
        IMAGES and LABELS may be gzip-compressed (detected by the magic 1f 8b) or plain. \
        An idx3 file [N,H,W] gives x F32 [B,1,H,W]; an idx2 file [N,D] gives x F32 [B,D]. \
        Unsigned-byte pixels are scaled by x = p / 255 * 2 - 1; other element types keep their values. \
        LABELS (idx1, N entries) gives y I64 [B]; its count must equal the image count. \
        Writes frames of kind 'batch' of --batch samples (the last may be shorter); metadata has \
        source, first (index of the frame's first sample) and count.

        Example:
          tensor from-idx train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz --batch 256 > mnist.st
        """)

    @Argument(help: "IDX image file (idx2 or idx3).") var images: String
    @Argument(help: "IDX label file (idx1).") var labels: String?
    @Option(help: "Samples per frame.") var batch: Int = 256
    @Option(help: "Use only the first N samples.") var limit: Int?

    func run() throws {
        guard batch > 0 else { throw DDPMError("--batch must be positive (got \(batch))") }
        if let limit, limit < 0 { throw DDPMError("--limit must be >= 0 (got \(limit))") }
        let writer = try FrameWriter()
        let img = try IDX.parse(FileBytes.read(images), name: images)
        guard img.dims.count == 2 || img.dims.count == 3 else {
            throw DDPMError("\(images): IDX images must have 2 or 3 dimensions ([N,D] or [N,H,W]), found \(img.dims)")
        }
        var lab: IDXArray? = nil
        if let labels {
            let l = try IDX.parse(FileBytes.read(labels), name: labels)
            guard l.dims.count == 1 else { throw DDPMError("\(labels): IDX labels must have 1 dimension, found \(l.dims)") }
            guard l.dims[0] == img.dims[0] else {
                throw DDPMError("\(labels): \(l.dims[0]) labels but \(images) has \(img.dims[0]) images")
            }
            guard l.type != .f32 && l.type != .f64 else { throw DDPMError("\(labels): labels must be integers") }
            lab = l
        }
        let n = min(img.dims[0], limit ?? Int.max)
        var start = 0
        while start < n {
            let r = start ..< min(start + batch, n)
            var frame = Frame(metadata: batchMetadata("from-idx", [
                "source": images + (labels.map { "," + $0 } ?? ""), "first": String(r.lowerBound), "count": String(r.count),
                "scaling": img.type == .u8 ? "x = p / 255 * 2 - 1" : "none",
                "batch": String(batch), "limit": limit.map(String.init) ?? "none"]))
            frame["x"] = IDX.images(img, range: r)
            if let lab { frame["y"] = IDX.labels(lab, range: r) }
            try writer.write(frame)
            start = r.upperBound
        }
    }
}

// MARK: from-npy / to-npy

struct FromNPY: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "from-npy",
        abstract: "Read a .npy array into a frame.",
        discussion: """
        Reads .npy versions 1, 2 and 3 with little-endian <f4, <f8, <i8, <i4 or |u1 elements; \
        Fortran-order arrays are transposed into C order. Values are copied unchanged (no scaling), \
        dtype kept (F32, F64, I64, I32, U8). Writes one frame of kind 'batch' holding the array as \
        --name (default x), or frames of --batch rows along axis 0.

        Example:
          tensor from-npy points.npy > points.st
        """)

    @Argument(help: ".npy file ('-' for stdin).") var file: String
    @Option(help: "Tensor name in the frame.") var name: String = "x"
    @Option(help: "Split along axis 0 into frames of this many rows (default: one frame).") var batch: Int?

    func run() throws {
        let writer = try FrameWriter()
        let t = try NPY.parse(FileBytes.read(file), name: file)
        let meta = ["source": file, "name": name, "batch": batch.map(String.init) ?? "none"]
        guard let batch else {
            var frame = Frame(metadata: batchMetadata("from-npy", meta))
            frame[name] = t
            try writer.write(frame)
            return
        }
        guard batch > 0 else { throw DDPMError("--batch must be positive (got \(batch))") }
        guard !t.shape.isEmpty else { throw DDPMError("\(file): a scalar cannot be split into batches") }
        var start = 0
        repeat {
            let r = start ..< min(start + batch, t.shape[0])
            var frame = Frame(metadata: batchMetadata("from-npy", meta.merging(["first": String(r.lowerBound), "count": String(r.count)]) { $1 }))
            frame[name] = t.rows(r)
            try writer.write(frame)
            start = r.upperBound
        } while start < t.shape[0]
    }
}

struct ToNPY: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "to-npy",
        abstract: "Write one tensor of a stream to a .npy file.",
        discussion: """
        Reads frames from stdin (or FILE) and writes the tensor --name (default x) of every frame, \
        concatenated along axis 0, as one C-order .npy file (version 1.0, or 2.0 for huge headers; \
        dtype kept: <f4, <f8, <i8, <i4, |u1). All frames must agree in dtype and in every axis but \
        the first; frames without the tensor are an error. --first writes only the first frame's \
        tensor (any shape, scalars included). The file is written atomically, in bounded memory.

        Example:
          tensor to-npy -o samples.npy < samples.st
        """)

    @Argument(help: "Input stream (default: stdin).") var input: String?
    @Option(name: .shortAndLong, help: "The .npy file to write.") var output: String
    @Option(help: "Name of the tensor to write.") var name: String = "x"
    @Flag(help: "Only the first frame's tensor.") var first = false

    func run() throws {
        let reader = try openStream(input)
        if first {
            guard let f = try reader.next() else { throw DDPMError("empty input stream") }
            try FileBytes.write(NPY.serialize(try f.require(name)), to: output)
            return
        }
        let w = try NPYStreamWriter(path: output)
        while let f = try reader.next() {
            do { try w.append(try f.require(name), what: "frame \(reader.framesRead)") }
            catch let e as DDPMError where !e.message.hasPrefix("frame") { throw DDPMError("frame \(reader.framesRead): \(e.message)") }
        }
        guard w.dtype != nil else { throw DDPMError("empty input stream") }
        try w.finish()
    }
}

// MARK: from-raw

struct FromRaw: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "from-raw",
        abstract: "Read headerless little-endian samples into frames.",
        discussion: """
        Reads samples of --shape and --dtype back to back from FILE or stdin and writes frames of \
        kind 'batch' holding --name (default x) of shape [B] + shape, B = --batch (the last frame may \
        be shorter). The dtype is kept unless --images (u8 only: x = p / 255 * 2 - 1 as F32). \
        A trailing partial sample is an error.

        Example:
          tensor from-raw --shape 1,28,28 --dtype u8 --images pixels.bin > x.st
        """)

    @Argument(help: "Raw file (default: stdin).") var file: String?
    @Option(help: "Shape of one sample, comma-separated, e.g. 1,28,28.") var shape: String
    @Option(help: "Element type: f32, f64, i64, i32 or u8 (little-endian).") var dtype: String = "f32"
    @Option(help: "Samples per frame.") var batch: Int = 256
    @Option(help: "Tensor name in the frames.") var name: String = "x"
    @Flag(help: "u8 pixels to F32 in [-1, 1].") var images = false

    func run() throws {
        let sample = try parseShape(shape, what: "--shape")
        guard let d = DType(rawValue: dtype.uppercased()) else { throw DDPMError("--dtype must be f32, f64, i64, i32 or u8 (got '\(dtype)')") }
        if images && d != .u8 { throw DDPMError("--images needs --dtype u8") }
        let writer = try FrameWriter()
        var fd: Int32 = 0
        if let file, file != "-" {
            fd = open(file, O_RDONLY)
            guard fd >= 0 else { throw DDPMError("cannot open \(file): \(String(cString: strerror(errno)))") }
        }
        defer { if fd != 0 { close(fd) } }
        let reader = try RawReader(fd: fd, name: file ?? "stdin", dtype: d, sampleShape: sample, batch: batch)
        var first = 0
        while let t = try reader.next() {
            var frame = Frame(metadata: batchMetadata("from-raw", [
                "source": file ?? "stdin", "dtype": d.rawValue, "shape": sample.map(String.init).joined(separator: ","),
                "batch": String(batch), "images": String(images), "first": String(first), "count": String(t.shape[0])]))
            if images, case .u8(let p) = t.storage {
                frame[name] = Tensor(p.map { Pixels.unit(Float($0), maxValue: 255) }, shape: t.shape)
            } else {
                frame[name] = t
            }
            try writer.write(frame)
            first += t.shape[0]
        }
    }
}

// MARK: info

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

    func run() throws {
        for path in files.isEmpty ? ["-"] : files {
            let reader = try openStream(path)
            if files.count > 1 { print("== \(path)") }
            while let f = try reader.next() {
                print(InfoText.describe(f, number: reader.framesRead))
                fflush(stdout)
            }
            if reader.framesRead == 0 { print("(no frames)") }
        }
    }
}

// MARK: toy

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

    @Argument(help: "swissroll, moons, 8gaussians or checkerboard.") var dataset: String
    @Option(name: .short, help: "Number of samples.") var n: Int
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "σ of the added Gaussian noise (default per data set).") var noise: Double?
    @Option(help: "Samples per frame (default: all in one frame).") var batch: Int?

    func run() throws {
        guard let set = ToyDataset(rawValue: dataset) else {
            throw DDPMError("unknown toy data set '\(dataset)' (choose: \(ToyDataset.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard n > 0 else { throw DDPMError("-n must be positive (got \(n))") }
        let sigma = noise ?? set.defaultNoise
        guard sigma >= 0, sigma.isFinite else { throw DDPMError("--noise must be >= 0 (got \(sigma))") }
        guard batch != nil || n <= 1 << 26 else {
            throw DDPMError("-n \(n) in one frame is over \(1 << 26) samples; add --batch (e.g. --batch 1000000)")
        }
        let b = batch ?? n
        guard b > 0 else { throw DDPMError("--batch must be positive (got \(b))") }
        let writer = try FrameWriter()
        var start = 0
        while start < n {
            let r = start ..< min(start + b, n)
            var frame = Frame(metadata: batchMetadata("toy", [
                "dataset": set.rawValue, "n": String(n), "seed": String(seed), "noise": String(sigma),
                "first": String(r.lowerBound), "count": String(r.count)]))
            frame["x"] = set.batch(seed: seed, range: r, noise: sigma)
            try writer.write(frame)
            start = r.upperBound
        }
    }
}

// MARK: scatter

struct Scatter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scatter",
        abstract: "Plot 2-D points as a PNG: one square panel per input, side by side.",
        discussion: """
        Each input is a stream file ('-' for stdin) whose frames hold x of shape [N,2] (all frames \
        are plotted). Panels share the view [-R, R]^2 (--range; default: the largest |coordinate| \
        over all inputs times 1.05), with a light grey frame and axis lines through 0. Points are \
        2x2 dots, blue in the first panel, then orange, green, red. Points outside the view are \
        counted in a note on stderr. Writes an RGB PNG --size pixels high.

        Example:
          tensor scatter data.st samples.st -o compare.png --size 512 --range 1.2
        """)

    @Argument(help: "Stream files with x [N,2].") var inputs: [String]
    @Option(name: .shortAndLong, help: "The PNG file to write.") var output: String
    @Option(help: "Panel size in pixels.") var size: Int = 512
    @Option(help: "Half-width R of the view [-R, R]^2.") var range: Double?
    @Option(help: "Name of the tensor to plot.") var name: String = "x"

    func run() throws {
        guard !inputs.isEmpty else { throw DDPMError("no input streams given") }
        guard inputs.filter({ $0 == "-" }).count <= 1 else { throw DDPMError("stdin ('-') can be read only once") }
        var sets: [[Float]] = []
        for path in inputs {
            let reader = try openStream(path)
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
        if outside > 0 { warn("tensor", "note: \(outside) point(s) outside the view [-\(r), \(r)]^2 were not drawn") }
        try plot.write(path: output)
    }
}

// MARK: reshape

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

    @Option(help: "Shape of one sample, comma-separated, e.g. 784 or 1,28,28.") var shape: String
    @Option(help: "Comma-separated tensor names to reshape.") var names: String = "x,eps,x0_pred"

    func run() throws {
        let dims = try parseShape(shape, what: "--shape")
        let list = names.split(separator: ",").map { String($0) }
        guard !list.isEmpty else { throw DDPMError("--names must name at least one tensor") }
        let reader = FrameReader()
        let writer = try FrameWriter()
        while let f = try reader.next() {
            do { try writer.write(try Reshape.apply(f, names: list, shape: dims)) }
            catch let e as DDPMError { throw DDPMError("frame \(reader.framesRead): \(e.message)") }
        }
    }
}
