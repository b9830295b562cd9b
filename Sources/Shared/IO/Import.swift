// Data into the stream format: the jobs behind `tensor from-png`, `from-idx`, `from-npy`,
// `from-raw` and `toy`. Each is built from typed values; `run(writer:)` reads its input's
// header, checks it, then writes data frames (kind 'batch') batch by batch. Errors name
// files and values, never command-line flags (the tool checks its flags first).
#if canImport(Glibc)
import Glibc
#endif

/// Metadata of a data frame written by `tensor <sub>`: kind, tool and version, plus `extra`.
func batchMetadata(_ sub: String, _ extra: [String: String]) -> [String: String] {
    var m = extra
    m["kind"] = "batch"
    m["tool"] = "tensor \(sub)"
    m["version"] = toolkitVersion
    return m
}

/// 0 ..< n in consecutive ranges of `size` (the last may be shorter); none when n is 0.
func batchRanges(_ n: Int, size: Int) -> [Range<Int>] {
    stride(from: 0, to: n, by: size).map { $0 ..< min($0 + size, n) }
}

/// PNG files into one frame: x F32 [N,C,H,W] in [-1, 1] (scaling and alpha: PNG.swift).
public struct PNGImport: Sendable {
    public var files: [String]
    public var mode: PNG.ChannelMode

    public init(files: [String], mode: PNG.ChannelMode = .asStored) {
        self.files = files; self.mode = mode
    }

    /// The frame; every file must have the first one's size and channel count (else PNGMismatch).
    public func frame() throws -> Frame {
        guard let head = files.first else { throw DDPMError("no PNG files given") }
        let first = try PNG.read(path: head, mode: mode)
        let per = first.data.count
        var x = [Float](repeating: 0, count: per * files.count)
        for (i, f) in files.enumerated() {
            let img = i == 0 ? first : try PNG.read(path: f, mode: mode)
            guard img.width == first.width, img.height == first.height, img.channels == first.channels else {
                throw PNGMismatch(file: f, width: img.width, height: img.height, channels: img.channels,
                                  first: head, firstWidth: first.width, firstHeight: first.height, firstChannels: first.channels)
            }
            x.replaceSubrange(i * per ..< (i + 1) * per, with: img.data)
        }
        var frame = Frame(metadata: batchMetadata("from-png", [
            "files": files.joined(separator: ","), "count": String(files.count),
            "channels": mode == .asStored ? "as stored" : mode == .gray ? "gray" : "rgb",
            "scaling": "x = p / max * 2 - 1; alpha composited onto black"]))
        frame["x"] = Tensor(x, shape: [files.count, first.channels, first.height, first.width])
        return frame
    }

    public func run(writer: FrameWriter) throws { try writer.write(frame()) }
}

/// A PNG whose size or channel count differs from the first file's (a PNGImport refuses it).
public struct PNGMismatch: Error, CustomStringConvertible, Sendable {
    public var file: String, width: Int, height: Int, channels: Int
    public var first: String, firstWidth: Int, firstHeight: Int, firstChannels: Int

    public var description: String {
        "\(file): \(width)x\(height) with \(channels) channel(s) differs from \(first): \(firstWidth)x\(firstHeight) with \(firstChannels)"
    }
}

/// MNIST-style IDX files into frames of x (F32; u8 pixels scaled to [-1, 1]) and y (I64 labels).
public struct IDXImport: Sendable {
    public var images: String
    public var labels: String?
    public var batch: Int
    /// Only the first `limit` samples (nil: all).
    public var limit: Int?

    public init(images: String, labels: String? = nil, batch: Int = 256, limit: Int? = nil) {
        self.images = images; self.labels = labels; self.batch = batch; self.limit = limit
    }

    public func run(writer: FrameWriter) throws {
        guard batch > 0 else { throw DDPMError("the batch size must be positive (got \(batch))") }
        if let limit, limit < 0 { throw DDPMError("the sample limit must be >= 0 (got \(limit))") }
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
        for r in batchRanges(min(img.dims[0], limit ?? Int.max), size: batch) {
            var frame = Frame(metadata: batchMetadata("from-idx", [
                "source": images + (labels.map { "," + $0 } ?? ""), "first": String(r.lowerBound), "count": String(r.count),
                "scaling": img.type == .u8 ? "x = p / 255 * 2 - 1" : "none",
                "batch": String(batch), "limit": limit.map(String.init) ?? "none"]))
            frame["x"] = IDX.images(img, range: r)
            if let lab { frame["y"] = IDX.labels(lab, range: r) }
            try writer.write(frame)
        }
    }
}

/// A .npy array (values and dtype unchanged) into one frame, or frames of `batch` rows.
public struct NPYImport: Sendable {
    /// The .npy file; "-" is stdin.
    public var file: String
    public var name: String
    public var batch: Int?

    public init(file: String, name: String = "x", batch: Int? = nil) {
        self.file = file; self.name = name; self.batch = batch
    }

    public func run(writer: FrameWriter) throws {
        let t = try NPY.parse(FileBytes.read(file), name: file)
        let meta = ["source": file, "name": name, "batch": batch.map(String.init) ?? "none"]
        guard let batch else {
            var frame = Frame(metadata: batchMetadata("from-npy", meta))
            frame[name] = t
            return try writer.write(frame)
        }
        guard batch > 0 else { throw DDPMError("the batch size must be positive (got \(batch))") }
        guard !t.shape.isEmpty else { throw DDPMError("\(file): a scalar cannot be split into batches") }
        // An array with 0 rows still gives one (empty) frame.
        for r in t.shape[0] == 0 ? [0..<0] : batchRanges(t.shape[0], size: batch) {
            var frame = Frame(metadata: batchMetadata("from-npy", meta.merging(["first": String(r.lowerBound), "count": String(r.count)]) { $1 }))
            frame[name] = t.rows(r)
            try writer.write(frame)
        }
    }
}

/// Headerless little-endian samples into frames of `batch` samples of `sampleShape`.
public struct RawImport: Sendable {
    /// The raw file; nil or "-" is stdin.
    public var file: String?
    public var dtype: DType
    public var sampleShape: [Int]
    public var batch: Int
    public var name: String
    /// u8 pixels to F32 in [-1, 1] (x = p / 255 * 2 - 1).
    public var images: Bool

    public init(file: String?, dtype: DType = .f32, sampleShape: [Int], batch: Int = 256, name: String = "x", images: Bool = false) {
        self.file = file; self.dtype = dtype; self.sampleShape = sampleShape; self.batch = batch; self.name = name; self.images = images
    }

    public func run(writer: FrameWriter) throws {
        if images && dtype != .u8 { throw DDPMError("scaling pixels to [-1, 1] needs u8 samples (got \(dtype.rawValue))") }
        var fd: Int32 = 0
        if let file, file != "-" {
            fd = open(file, O_RDONLY)
            guard fd >= 0 else { throw DDPMError("cannot open \(file): \(String(cString: strerror(errno)))") }
        }
        defer { if fd != 0 { close(fd) } }
        let reader = try RawReader(fd: fd, name: file ?? "stdin", dtype: dtype, sampleShape: sampleShape, batch: batch)
        var first = 0
        while let t = try reader.next() {
            var frame = Frame(metadata: batchMetadata("from-raw", [
                "source": file ?? "stdin", "dtype": dtype.rawValue, "shape": sampleShape.map(String.init).joined(separator: ","),
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

/// A 2-D toy data set (ToyData.swift) as x F32 [N,2], in one frame or frames of `batch`.
public struct ToyImport: Sendable {
    public var dataset: ToyDataset
    public var n: Int
    public var seed: UInt64
    /// σ of the added noise (nil: the data set's default).
    public var noise: Double?
    /// Samples per frame (nil: all in one frame, at most `maxFrame`).
    public var batch: Int?
    public static let maxFrame = 1 << 26

    public init(dataset: ToyDataset, n: Int, seed: UInt64 = 0, noise: Double? = nil, batch: Int? = nil) {
        self.dataset = dataset; self.n = n; self.seed = seed; self.noise = noise; self.batch = batch
    }

    public func run(writer: FrameWriter) throws {
        guard n > 0 else { throw DDPMError("the number of samples must be positive (got \(n))") }
        let sigma = noise ?? dataset.defaultNoise
        guard sigma >= 0, sigma.isFinite else { throw DDPMError("the noise σ must be >= 0 (got \(sigma))") }
        guard batch != nil || n <= ToyImport.maxFrame else {
            throw DDPMError("\(n) samples in one frame are over \(ToyImport.maxFrame); write them in batches")
        }
        let b = batch ?? n
        guard b > 0 else { throw DDPMError("the batch size must be positive (got \(b))") }
        guard b <= ToyImport.maxFrame else { throw DDPMError("\(b) samples per frame are over \(ToyImport.maxFrame)") }
        for r in batchRanges(n, size: b) {
            var frame = Frame(metadata: batchMetadata("toy", [
                "dataset": dataset.rawValue, "n": String(n), "seed": String(seed), "noise": String(sigma),
                "first": String(r.lowerBound), "count": String(r.count)]))
            frame["x"] = dataset.batch(seed: seed, range: r, noise: sigma)
            try writer.write(frame)
        }
    }
}
