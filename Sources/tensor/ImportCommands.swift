// tensor from-png, from-idx, from-npy, from-raw: options -> a job of Shared/IO/Import.swift.
import ArgumentParser
import Shared

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

    func validate() throws { try check(!(gray && rgb), "--gray and --rgb exclude each other") }

    func run() throws {
        do { try PNGImport(files: files, mode: gray ? .gray : rgb ? .rgb : .asStored).run(writer: FrameWriter()) }
        catch let e as PNGMismatch { throw DDPMError("\(e) (use --gray or --rgb to force channels)") }
    }
}

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

    func validate() throws {
        try check(batch > 0, "--batch must be positive (got \(batch))")
        if let limit { try check(limit >= 0, "--limit must be >= 0 (got \(limit))") }
    }

    func run() throws { try IDXImport(images: images, labels: labels, batch: batch, limit: limit).run(writer: FrameWriter()) }
}

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

    func validate() throws {
        if let batch { try check(batch > 0, "--batch must be positive (got \(batch))") }
    }

    func run() throws { try NPYImport(file: file, name: name, batch: batch).run(writer: FrameWriter()) }
}

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
    @Option(help: "Shape of one sample, comma-separated, e.g. 1,28,28.") var shape: SampleDims
    @Option(help: "Element type (little-endian).") var dtype: ElementType = .f32
    @Option(help: "Samples per frame.") var batch: Int = 256
    @Option(help: "Tensor name in the frames.") var name: String = "x"
    @Flag(help: "u8 pixels to F32 in [-1, 1].") var images = false

    func validate() throws {
        try check(shape.allPositive, "--shape must be positive sizes separated by commas, e.g. 1,28,28 (got '\(shape)')")
        try check(!images || dtype == .u8, "--images needs --dtype u8")
        try check(batch > 0, "--batch must be positive (got \(batch))")
        try check(RawReader.fits(sampleShape: shape.dims, dtype: dtype.dtype, batch: batch), "--batch x sample size exceeds 4 GiB")
    }

    func run() throws {
        try RawImport(file: file, dtype: dtype.dtype, sampleShape: shape.dims, batch: batch, name: name, images: images).run(writer: FrameWriter())
    }
}
