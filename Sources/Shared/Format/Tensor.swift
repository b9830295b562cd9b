// A tensor: a dtype, a shape and its elements, stored typed so numeric code
// reads them without conversion. Little-endian on disk (docs/FORMAT.md).

/// The element types the stream format supports (safetensors spellings).
public enum DType: String, CaseIterable, Sendable {
    case f32 = "F32", f64 = "F64", i64 = "I64", i32 = "I32", u8 = "U8"

    public var byteSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f64, .i64: return 8
        case .u8: return 1
        }
    }
}

/// Typed element storage.
public enum TensorStorage: Sendable {
    case f32([Float]), f64([Double]), i64([Int64]), i32([Int32]), u8([UInt8])
}

public struct Tensor: Sendable {
    public var shape: [Int]
    public var storage: TensorStorage

    public var dtype: DType {
        switch storage {
        case .f32: return .f32
        case .f64: return .f64
        case .i64: return .i64
        case .i32: return .i32
        case .u8: return .u8
        }
    }

    /// Number of elements (product of the shape; 1 for a scalar of shape []).
    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { count * dtype.byteSize }

    public init(shape: [Int], storage: TensorStorage) {
        self.shape = shape
        self.storage = storage
    }
    public init(_ values: [Float], shape: [Int]) { self.init(shape: shape, storage: .f32(values)) }
    public init(_ values: [Double], shape: [Int]) { self.init(shape: shape, storage: .f64(values)) }
    public init(_ values: [Int64], shape: [Int]) { self.init(shape: shape, storage: .i64(values)) }
    public init(_ values: [Int32], shape: [Int]) { self.init(shape: shape, storage: .i32(values)) }
    public init(_ values: [UInt8], shape: [Int]) { self.init(shape: shape, storage: .u8(values)) }

    /// The elements as Float, converting from any dtype.
    public var floats: [Float] {
        switch storage {
        case .f32(let a): return a
        case .f64(let a): return a.map { Float($0) }
        case .i64(let a): return a.map { Float($0) }
        case .i32(let a): return a.map { Float($0) }
        case .u8(let a): return a.map { Float($0) }
        }
    }

    /// The elements as Double, converting from any dtype.
    public var doubles: [Double] {
        switch storage {
        case .f32(let a): return a.map { Double($0) }
        case .f64(let a): return a
        case .i64(let a): return a.map { Double($0) }
        case .i32(let a): return a.map { Double($0) }
        case .u8(let a): return a.map { Double($0) }
        }
    }

    /// The elements as Int64, for integer tensors (t, y). Float tensors must hold whole numbers.
    public func integers() throws -> [Int64] {
        switch storage {
        case .i64(let a): return a
        case .i32(let a): return a.map { Int64($0) }
        case .u8(let a): return a.map { Int64($0) }
        case .f32(let a):
            return try a.map { v in
                guard v.rounded() == v, abs(v) < 9e15 else { throw DDPMError("expected whole numbers, found \(v)") }
                return Int64(v)
            }
        case .f64(let a):
            return try a.map { v in
                guard v.rounded() == v, abs(v) < 9e15 else { throw DDPMError("expected whole numbers, found \(v)") }
                return Int64(v)
            }
        }
    }
}

/// The one error type of the project: a message fit for a one-line report on stderr. Control
/// characters in it (from a name or value a file supplied) are escaped and a message longer than
/// `maxLength` characters is cut, so it stays one readable line whatever it quotes.
public struct DDPMError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public static let maxLength = 2000
    public init(_ message: String) { self.message = message.escapedForTerminal(limit: DDPMError.maxLength) }
    public var description: String { message }
}
