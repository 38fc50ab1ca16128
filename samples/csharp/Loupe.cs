// Loupe for C#: a P/Invoke binding over the C ABI (loupe.h), the way Unity and Godot C# scripts
// call native plugins. Handles are SafeHandles (freed deterministically with using/Dispose);
// failed calls throw LoupeException carrying the status and loupe_last_error().
using System;
using System.Runtime.InteropServices;

namespace Loupe
{
    public enum Status { Ok = 0, InvalidArgument = -1, NotFound = -2, BadModel = -3, Unsupported = -4,
                         OutOfMemory = -5, Cancelled = -6, Timeout = -7, InvalidState = -8, Internal = -9 }

    public class LoupeException : Exception
    {
        public Status Status { get; }
        public LoupeException(Status status, string message) : base(status + ": " + message) { Status = status; }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Image
    {
        public int Width, Height, Stride, Format;  // Format: 1 RGBA8, 2 RGB8, 3 GRAY8
        public IntPtr Data;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeBox
    {
        public float X0, Y0, X1, Y1, Score;
        public IntPtr Label;
    }

    /// <summary>A labelled box in image pixels.</summary>
    public sealed class Box
    {
        public float X0, Y0, X1, Y1, Score;
        public string Label;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct RuntimeOptions
    {
        public uint StructSize;
        public IntPtr Device;
        public int Precision;
        public ulong VramBudgetBytes;
        public IntPtr ModelsDir;
        public IntPtr LogFn, LogUser;
        public int LogLevel;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct Progress
    {
        public uint StructSize;
        public int Step, Total;
        public IntPtr Stage, Preview;
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int ProgressFn(IntPtr user, ref Progress p);

    internal static class Native
    {
        const string Lib = "loupe";
        [DllImport(Lib)] public static extern IntPtr loupe_version();
        [DllImport(Lib)] public static extern IntPtr loupe_last_error();
        [DllImport(Lib)] public static extern int loupe_runtime_create(out IntPtr rt, ref RuntimeOptions o);
        [DllImport(Lib)] public static extern void loupe_runtime_free(IntPtr rt);
        [DllImport(Lib)] public static extern int loupe_runtime_diagnostics(IntPtr rt, out IntPtr json);
        [DllImport(Lib)] public static extern void loupe_string_free(IntPtr s);
        [DllImport(Lib)] public static extern int loupe_session_open(out IntPtr s, IntPtr rt, byte[] path, IntPtr options);
        [DllImport(Lib)] public static extern void loupe_session_close(IntPtr s);
        [DllImport(Lib)] public static extern int loupe_request_create(out IntPtr rq, byte[] task);
        [DllImport(Lib)] public static extern void loupe_request_free(IntPtr rq);
        [DllImport(Lib)] public static extern int loupe_request_set_image(IntPtr rq, ref Image im);
        [DllImport(Lib)] public static extern int loupe_request_set_string(IntPtr rq, byte[] key, byte[] value);
        [DllImport(Lib)] public static extern int loupe_request_set_int(IntPtr rq, byte[] key, long value);
        [DllImport(Lib)] public static extern int loupe_session_submit(out IntPtr job, IntPtr s, IntPtr rq, ProgressFn fn, IntPtr user);
        [DllImport(Lib)] public static extern int loupe_runtime_submit(out IntPtr job, IntPtr rt, IntPtr rq, ProgressFn fn, IntPtr user);
        [DllImport(Lib)] public static extern int loupe_job_wait(IntPtr job, long timeoutMs);
        [DllImport(Lib)] public static extern int loupe_job_cancel(IntPtr job);
        [DllImport(Lib)] public static extern int loupe_job_take_result(out IntPtr res, IntPtr job);
        [DllImport(Lib)] public static extern void loupe_job_free(IntPtr job);
        [DllImport(Lib)] public static extern void loupe_result_free(IntPtr res);
        [DllImport(Lib)] public static extern IntPtr loupe_result_text(IntPtr res);
        [DllImport(Lib)] public static extern IntPtr loupe_result_json(IntPtr res);
        [DllImport(Lib)] public static extern UIntPtr loupe_result_box_count(IntPtr res);
        [DllImport(Lib)] public static extern int loupe_result_box(IntPtr res, UIntPtr i, out NativeBox box);
        [DllImport(Lib)] public static extern int loupe_result_number(IntPtr res, byte[] key, out double v);

        public static byte[] Utf8(string s) => s == null ? null : System.Text.Encoding.UTF8.GetBytes(s + "\0");
        public static void Check(int status)
        {
            if (status != 0) throw new LoupeException((Status)status, Marshal.PtrToStringUTF8(loupe_last_error()));
        }
    }

    /// <summary>A finished job's result, copied into managed memory.</summary>
    public sealed class Result
    {
        public string Text { get; }
        public string Json { get; }
        public Box[] Boxes { get; }
        private readonly System.Collections.Generic.Dictionary<string, double> numbers = new System.Collections.Generic.Dictionary<string, double>();
        internal Result(IntPtr h)
        {
            Text = Marshal.PtrToStringUTF8(Native.loupe_result_text(h));
            Json = Marshal.PtrToStringUTF8(Native.loupe_result_json(h));
            var n = (int)Native.loupe_result_box_count(h);
            Boxes = new Box[n];
            for (int i = 0; i < n; i++)
            {
                Native.Check(Native.loupe_result_box(h, (UIntPtr)i, out var b));
                Boxes[i] = new Box { X0 = b.X0, Y0 = b.Y0, X1 = b.X1, Y1 = b.Y1, Score = b.Score,
                                     Label = Marshal.PtrToStringUTF8(b.Label) ?? "" };
            }
            foreach (var key in new[] { "ok", "bandwidth_gbps", "matmul_tflops", "matmul_max_abs_error" })
                if (Native.loupe_result_number(h, Native.Utf8(key), out var v) == 0) numbers[key] = v;
        }
        public double Number(string key) => numbers.TryGetValue(key, out var v) ? v : double.NaN;
    }

    public sealed class Runtime : IDisposable
    {
        internal IntPtr Handle;
        public Runtime(string device = "auto")
        {
            var dev = Marshal.StringToHGlobalAnsi(device);
            try
            {
                var o = new RuntimeOptions { StructSize = (uint)Marshal.SizeOf<RuntimeOptions>(), Device = dev, LogLevel = 1 };
                Native.Check(Native.loupe_runtime_create(out Handle, ref o));
            }
            finally { Marshal.FreeHGlobal(dev); }
        }
        public static string Version => Marshal.PtrToStringUTF8(Native.loupe_version());
        public string Diagnostics()
        {
            Native.Check(Native.loupe_runtime_diagnostics(Handle, out var p));
            try { return Marshal.PtrToStringUTF8(p); } finally { Native.loupe_string_free(p); }
        }
        public Session OpenSession(string path) => new Session(this, path);
        /// <summary>Runs the device self-test; onProgress may return false to cancel.</summary>
        public Result SelfTest(Func<int, int, string, bool> onProgress = null, long matmulSize = 0) =>
            Job.Run((out IntPtr job, IntPtr rq, ProgressFn fn) => Native.loupe_runtime_submit(out job, Handle, rq, fn, IntPtr.Zero),
                    "selftest", null, onProgress, rq => { if (matmulSize > 0) Native.Check(Native.loupe_request_set_int(rq, Native.Utf8("matmul_size"), matmulSize)); });
        public void Dispose() { if (Handle != IntPtr.Zero) { Native.loupe_runtime_free(Handle); Handle = IntPtr.Zero; } }
    }

    public sealed class Session : IDisposable
    {
        IntPtr handle;
        internal Session(Runtime rt, string path) { Native.Check(Native.loupe_session_open(out handle, rt.Handle, Native.Utf8(path), IntPtr.Zero)); }
        /// <summary>Runs a task on an RGBA8 image (width x height x 4 bytes). Text goes to the "text" parameter.</summary>
        public Result Run(string task, byte[] rgba, int width, int height, string text = null, long maxNewTokens = 0,
                          Func<int, int, string, bool> onProgress = null)
        {
            var pin = GCHandle.Alloc(rgba, GCHandleType.Pinned);
            try
            {
                var im = new Image { Width = width, Height = height, Stride = width * 4, Format = 1, Data = pin.AddrOfPinnedObject() };
                return Job.Run((out IntPtr job, IntPtr rq, ProgressFn fn) => Native.loupe_session_submit(out job, handle, rq, fn, IntPtr.Zero),
                               task, im, onProgress, rq =>
                               {
                                   if (text != null) Native.Check(Native.loupe_request_set_string(rq, Native.Utf8("text"), Native.Utf8(text)));
                                   if (maxNewTokens > 0) Native.Check(Native.loupe_request_set_int(rq, Native.Utf8("max_new_tokens"), maxNewTokens));
                               });
            }
            finally { pin.Free(); }
        }
        public void Dispose() { if (handle != IntPtr.Zero) { Native.loupe_session_close(handle); handle = IntPtr.Zero; } }
    }

    internal static class Job
    {
        public delegate int Submit(out IntPtr job, IntPtr rq, ProgressFn fn);
        public static Result Run(Submit submit, string task, Image? image, Func<int, int, string, bool> onProgress, Action<IntPtr> set)
        {
            Native.Check(Native.loupe_request_create(out var rq, Native.Utf8(task)));
            IntPtr job;
            // The delegate must stay alive while the job runs (the worker thread calls it).
            ProgressFn fn = (IntPtr u, ref Progress p) =>
                onProgress == null || onProgress(p.Step, p.Total, Marshal.PtrToStringUTF8(p.Stage)) ? 1 : 0;
            try
            {
                if (image.HasValue) { var im = image.Value; Native.Check(Native.loupe_request_set_image(rq, ref im)); }
                set?.Invoke(rq);
                Native.Check(submit(out job, rq, fn));
            }
            finally { Native.loupe_request_free(rq); }
            try
            {
                Native.loupe_job_wait(job, -1);
                Native.Check(Native.loupe_job_take_result(out var res, job));
                try { return new Result(res); } finally { Native.loupe_result_free(res); }
            }
            finally { Native.loupe_job_free(job); GC.KeepAlive(fn); }
        }
    }
}
