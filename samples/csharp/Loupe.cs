// Loupe for C#: a P/Invoke binding over the C ABI (loupe.h), the way Unity and Godot C# scripts
// call native plugins. Handles are freed deterministically with using/Dispose; failed calls throw
// LoupeException carrying the status and loupe_last_error().
// Structs that start with struct_size are filled with their defaults by the library's loupe_*_init
// functions (never copied by hand here); Library.CheckLayouts() checks that every layout below fits
// the library loaded. Tasks and their parameters are the library's description (Library.Tasks(),
// Session.Tasks(), or the same as JSON): Run() sets each parameter with the setter its described
// type needs, and the library checks the request at submit.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Loupe
{
    public enum Status { Ok = 0, InvalidArgument = -1, NotFound = -2, BadModel = -3, Unsupported = -4,
                         OutOfMemory = -5, Cancelled = -6, Timeout = -7, InvalidState = -8, Internal = -9 }

    /// <summary>loupe_shape_kind: what a box or polygon of a result is.</summary>
    public enum ShapeKind { Box = 1, Quad = 2, Polygon = 3 }

    /// <summary>loupe_param_type.</summary>
    public enum ParamType { Int = 1, Float = 2, String = 3, Bool = 4, Choice = 5 }

    /// <summary>LOUPE_INPUT_* bits.</summary>
    [Flags] public enum Inputs : uint { None = 0, Image = 0x1, Mask = 0x2, Text = 0x4, Region = 0x8, Question = 0x10 }

    /// <summary>LOUPE_OUTPUT_* bits.</summary>
    [Flags] public enum Outputs : uint { None = 0, Text = 0x1, Boxes = 0x2, Polygons = 0x4, Masks = 0x8, Images = 0x10, Numbers = 0x20 }

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

    // ------------------------------------------------------------------ C layouts (loupe.h)

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
        public int NumThreads;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct SessionOptions
    {
        public uint StructSize;
        public IntPtr Device;
        public int Precision;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct SessionInfo
    {
        public uint StructSize;
        public IntPtr Family, Variant, Tasks, Device, Dtype, Path;
        public ulong Bytes;
        public int Resident;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeTaskInfo
    {
        public uint StructSize;
        public IntPtr Name, Label, Help, Group;
        public uint Inputs, Required, Outputs;
        public IntPtr TextKey, TextLabel, TextHelp;
        public int Runtime;
        public UIntPtr ParamCount;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeParamInfo
    {
        public uint StructSize;
        public IntPtr Name;
        public int Type;
        public IntPtr Label, Help, Unit;
        public double DefaultNumber;
        public IntPtr DefaultString;
        public double Min, Max, Step;
        public UIntPtr ChoiceCount;
        public IntPtr Choices;
        public int Advanced;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeBox
    {
        public uint StructSize;
        public int Kind;
        public float X0, Y0, X1, Y1, Score;
        public IntPtr Label;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativePolygon
    {
        public uint StructSize;
        public int Kind;
        public IntPtr Points;
        public UIntPtr PointCount;
        public IntPtr Label;
        public int Group;
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

    internal delegate int InitFn<T>(ref T s, uint structSize) where T : struct;

    internal static class Native
    {
        const string Lib = "loupe";
        [DllImport(Lib)] public static extern IntPtr loupe_version();
        [DllImport(Lib)] public static extern uint loupe_version_number();
        [DllImport(Lib)] public static extern IntPtr loupe_last_error();
        [DllImport(Lib)] public static extern int loupe_runtime_options_init(ref RuntimeOptions o, uint size);
        [DllImport(Lib)] public static extern int loupe_session_options_init(ref SessionOptions o, uint size);
        [DllImport(Lib)] public static extern int loupe_session_info_init(ref SessionInfo o, uint size);
        [DllImport(Lib)] public static extern int loupe_task_info_init(ref NativeTaskInfo o, uint size);
        [DllImport(Lib)] public static extern int loupe_param_info_init(ref NativeParamInfo o, uint size);
        [DllImport(Lib)] public static extern int loupe_box_init(ref NativeBox o, uint size);
        [DllImport(Lib)] public static extern int loupe_polygon_init(ref NativePolygon o, uint size);
        [DllImport(Lib)] public static extern int loupe_runtime_create(out IntPtr rt, ref RuntimeOptions o);
        [DllImport(Lib)] public static extern void loupe_runtime_free(IntPtr rt);
        [DllImport(Lib)] public static extern int loupe_runtime_diagnostics(IntPtr rt, out IntPtr json);
        [DllImport(Lib)] public static extern void loupe_string_free(IntPtr s);
        [DllImport(Lib)] public static extern int loupe_session_open(out IntPtr s, IntPtr rt, byte[] path, ref SessionOptions options);
        [DllImport(Lib)] public static extern void loupe_session_close(IntPtr s);
        [DllImport(Lib)] public static extern int loupe_session_describe(IntPtr s, ref SessionInfo info);
        [DllImport(Lib)] public static extern UIntPtr loupe_task_count(IntPtr s);
        [DllImport(Lib)] public static extern int loupe_task_describe(IntPtr s, UIntPtr index, ref NativeTaskInfo info);
        [DllImport(Lib)] public static extern int loupe_task_find(IntPtr s, byte[] name, out UIntPtr index);
        [DllImport(Lib)] public static extern int loupe_task_param(IntPtr s, UIntPtr task, UIntPtr param, ref NativeParamInfo info);
        [DllImport(Lib)] public static extern int loupe_tasks_json(IntPtr s, out IntPtr json);
        [DllImport(Lib)] public static extern int loupe_request_create(out IntPtr rq, byte[] task);
        [DllImport(Lib)] public static extern void loupe_request_free(IntPtr rq);
        [DllImport(Lib)] public static extern int loupe_request_set_image(IntPtr rq, ref Image im);
        [DllImport(Lib)] public static extern int loupe_request_set_mask(IntPtr rq, ref Image im);
        [DllImport(Lib)] public static extern int loupe_request_set_string(IntPtr rq, byte[] key, byte[] value);
        [DllImport(Lib)] public static extern int loupe_request_set_int(IntPtr rq, byte[] key, long value);
        [DllImport(Lib)] public static extern int loupe_request_set_float(IntPtr rq, byte[] key, double value);
        [DllImport(Lib)] public static extern int loupe_session_submit(out IntPtr job, IntPtr s, IntPtr rq, ProgressFn fn, IntPtr user);
        [DllImport(Lib)] public static extern int loupe_runtime_submit(out IntPtr job, IntPtr rt, IntPtr rq, ProgressFn fn, IntPtr user);
        [DllImport(Lib)] public static extern int loupe_job_wait(IntPtr job, long timeoutMs);
        [DllImport(Lib)] public static extern int loupe_job_cancel(IntPtr job);
        [DllImport(Lib)] public static extern int loupe_job_take_result(out IntPtr res, IntPtr job);
        [DllImport(Lib)] public static extern void loupe_job_free(IntPtr job);
        [DllImport(Lib)] public static extern void loupe_result_free(IntPtr res);
        [DllImport(Lib)] public static extern IntPtr loupe_result_task(IntPtr res);
        [DllImport(Lib)] public static extern IntPtr loupe_result_text(IntPtr res);
        [DllImport(Lib)] public static extern IntPtr loupe_result_json(IntPtr res);
        [DllImport(Lib)] public static extern UIntPtr loupe_result_box_count(IntPtr res);
        [DllImport(Lib)] public static extern int loupe_result_get_box(IntPtr res, UIntPtr i, ref NativeBox box);
        [DllImport(Lib)] public static extern UIntPtr loupe_result_polygon_count(IntPtr res);
        [DllImport(Lib)] public static extern int loupe_result_get_polygon(IntPtr res, UIntPtr i, ref NativePolygon polygon);
        [DllImport(Lib)] public static extern int loupe_result_number(IntPtr res, byte[] key, out double v);

        public static byte[] Utf8(string s) => s == null ? null : System.Text.Encoding.UTF8.GetBytes(s + "\0");
        public static string Str(IntPtr p) => p == IntPtr.Zero ? "" : Marshal.PtrToStringUTF8(p);
        public static void Check(int status)
        {
            if (status != 0) throw new LoupeException((Status)status, Marshal.PtrToStringUTF8(loupe_last_error()));
        }
        /// <summary>A struct filled with the library's defaults by its loupe_*_init (struct_size = our layout's size).</summary>
        public static T Init<T>(InitFn<T> init) where T : struct
        {
            var s = default(T);
            Check(init(ref s, (uint)Marshal.SizeOf<T>()));
            return s;
        }
        public static string TakeString(IntPtr p)
        {
            try { return Str(p); } finally { loupe_string_free(p); }
        }
    }

    /// <summary>What the library is: version, layout check, the task table.</summary>
    public static class Library
    {
        public const uint Needs = 200;  // 0.2.0: init functions, task description, loupe_result_get_box/get_polygon
        static bool checkedLayouts;

        public static string Version => Marshal.PtrToStringUTF8(Native.loupe_version());

        /// <summary>Each layout of this binding must be accepted by its loupe_*_init with Marshal.SizeOf
        /// (the library refuses a struct larger than its own: a layout from a newer header) and the
        /// defaults must land where our fields are. Throws LoupeException naming the struct otherwise.</summary>
        public static void CheckLayouts()
        {
            if (checkedLayouts) return;
            if (Native.loupe_version_number() < Needs)
                throw new LoupeException(Status.Unsupported, "this binding needs libloupe 0.2 or newer; loaded: " + Version);
            Check<RuntimeOptions>(Native.loupe_runtime_options_init, s => s.StructSize, s => s.LogLevel == 1 && s.NumThreads == 0);
            Check<SessionOptions>(Native.loupe_session_options_init, s => s.StructSize, s => s.Precision == 0);
            Check<SessionInfo>(Native.loupe_session_info_init, s => s.StructSize, s => s.Family == IntPtr.Zero);
            Check<NativeTaskInfo>(Native.loupe_task_info_init, s => s.StructSize, s => s.Name == IntPtr.Zero);
            Check<NativeParamInfo>(Native.loupe_param_info_init, s => s.StructSize, s => s.Type == (int)ParamType.Int);
            Check<NativeBox>(Native.loupe_box_init, s => s.StructSize, s => s.Kind == (int)ShapeKind.Box);
            Check<NativePolygon>(Native.loupe_polygon_init, s => s.StructSize, s => s.Kind == (int)ShapeKind.Polygon);
            checkedLayouts = true;
        }

        static void Check<T>(InitFn<T> init, Func<T, uint> size, Func<T, bool> defaults) where T : struct
        {
            T s;
            try { s = Native.Init(init); }
            catch (LoupeException e)
            {
                throw new LoupeException(e.Status, "the binding's layout of " + typeof(T).Name + " (" + Marshal.SizeOf<T>() +
                                                   " bytes) does not fit libloupe " + Version + ": " + e.Message);
            }
            if (size(s) != (uint)Marshal.SizeOf<T>() || !defaults(s))
                throw new LoupeException(Status.Internal, "the binding's layout of " + typeof(T).Name + " does not match libloupe " + Version);
        }

        /// <summary>The library's task table (also the runtime tasks), generic defaults.</summary>
        public static TaskInfo[] Tasks() => TaskInfo.All(IntPtr.Zero);
        public static TaskInfo Task(string name) => TaskInfo.Find(IntPtr.Zero, name);
        /// <summary>The same description as JSON (loupe_tasks_json).</summary>
        public static string TasksJson() => TaskInfo.Json(IntPtr.Zero);
    }

    /// <summary>One parameter of a task, as the library describes it.</summary>
    public sealed class ParamInfo
    {
        public string Name, Label, Help, Unit, DefaultString;
        public ParamType Type;
        public double Default, Min, Max, Step;  // Int, Float, Bool (Default 0/1)
        public string[] Choices;
        public bool Advanced;
    }

    /// <summary>A task: its inputs, parameters and outputs (loupe_task_describe / loupe_task_param).</summary>
    public sealed class TaskInfo
    {
        public string Name, Label, Help, Group, TextKey, TextLabel, TextHelp;
        public Inputs Inputs, Required;
        public Outputs Outputs;
        public bool Runtime;
        public ParamInfo[] Params;

        public ParamInfo Param(string name) => Array.Find(Params, p => p.Name == name);

        internal static TaskInfo At(IntPtr session, UIntPtr index)
        {
            var t = Native.Init<NativeTaskInfo>(Native.loupe_task_info_init);
            Native.Check(Native.loupe_task_describe(session, index, ref t));
            var info = new TaskInfo {
                Name = Native.Str(t.Name), Label = Native.Str(t.Label), Help = Native.Str(t.Help), Group = Native.Str(t.Group),
                TextKey = Native.Str(t.TextKey), TextLabel = Native.Str(t.TextLabel), TextHelp = Native.Str(t.TextHelp),
                Inputs = (Inputs)t.Inputs, Required = (Inputs)t.Required, Outputs = (Outputs)t.Outputs, Runtime = t.Runtime != 0,
                Params = new ParamInfo[(int)t.ParamCount] };
            for (int i = 0; i < info.Params.Length; i++)
            {
                var p = Native.Init<NativeParamInfo>(Native.loupe_param_info_init);
                Native.Check(Native.loupe_task_param(session, index, (UIntPtr)i, ref p));
                var choices = new string[(int)p.ChoiceCount];
                for (int c = 0; c < choices.Length; c++) choices[c] = Native.Str(Marshal.ReadIntPtr(p.Choices, c * IntPtr.Size));
                info.Params[i] = new ParamInfo {
                    Name = Native.Str(p.Name), Type = (ParamType)p.Type, Label = Native.Str(p.Label), Help = Native.Str(p.Help),
                    Unit = Native.Str(p.Unit), Default = p.DefaultNumber, DefaultString = Native.Str(p.DefaultString),
                    Min = p.Min, Max = p.Max, Step = p.Step, Choices = choices, Advanced = p.Advanced != 0 };
            }
            return info;
        }

        internal static TaskInfo[] All(IntPtr session)
        {
            var n = (int)Native.loupe_task_count(session);
            var all = new TaskInfo[n];
            for (int i = 0; i < n; i++) all[i] = At(session, (UIntPtr)i);
            return all;
        }

        /// <summary>A task by name; LoupeException NotFound (naming what is offered) if not offered.</summary>
        internal static TaskInfo Find(IntPtr session, string name)
        {
            Native.Check(Native.loupe_task_find(session, Native.Utf8(name), out var index));
            return At(session, index);
        }

        internal static string Json(IntPtr session)
        {
            Native.Check(Native.loupe_tasks_json(session, out var p));
            return Native.TakeString(p);
        }
    }

    /// <summary>A box of a result in image pixels.</summary>
    public sealed class Box
    {
        public ShapeKind Kind;
        public float X0, Y0, X1, Y1, Score;
        public string Label;
    }

    /// <summary>A polygon of a result: Quad (OCR lines, 4 corners) or Polygon (outlines).</summary>
    public sealed class Polygon
    {
        public ShapeKind Kind;
        public float[] Points;  // x0, y0, x1, y1, ... in image pixels
        public int PointCount => Points.Length / 2;
        public string Label;
        public int Group;
    }

    /// <summary>A finished job's result, copied into managed memory.</summary>
    public sealed class Result
    {
        public string Task { get; }
        public string Text { get; }
        public string Json { get; }
        public Box[] Boxes { get; }
        public Polygon[] Polygons { get; }
        public IReadOnlyDictionary<string, double> Numbers => numbers;
        private readonly Dictionary<string, double> numbers = new Dictionary<string, double>();
        internal Result(IntPtr h)
        {
            Task = Native.Str(Native.loupe_result_task(h));
            Text = Native.Str(Native.loupe_result_text(h));
            Json = Native.Str(Native.loupe_result_json(h));
            Boxes = new Box[(int)Native.loupe_result_box_count(h)];
            for (int i = 0; i < Boxes.Length; i++)
            {
                var b = Native.Init<NativeBox>(Native.loupe_box_init);
                Native.Check(Native.loupe_result_get_box(h, (UIntPtr)i, ref b));
                Boxes[i] = new Box { Kind = (ShapeKind)b.Kind, X0 = b.X0, Y0 = b.Y0, X1 = b.X1, Y1 = b.Y1, Score = b.Score,
                                     Label = Native.Str(b.Label) };
            }
            Polygons = new Polygon[(int)Native.loupe_result_polygon_count(h)];
            for (int i = 0; i < Polygons.Length; i++)
            {
                var p = Native.Init<NativePolygon>(Native.loupe_polygon_init);
                Native.Check(Native.loupe_result_get_polygon(h, (UIntPtr)i, ref p));
                var pts = new float[2 * (int)p.PointCount];
                if (pts.Length > 0) Marshal.Copy(p.Points, pts, 0, pts.Length);
                Polygons[i] = new Polygon { Kind = (ShapeKind)p.Kind, Points = pts, Label = Native.Str(p.Label), Group = p.Group };
            }
            // Every named number: the keys come from the JSON's "numbers" object, the values from loupe_result_number.
            foreach (var key in NumberKeys(Json))
                if (Native.loupe_result_number(h, Native.Utf8(key), out var v) == 0) numbers[key] = v;
        }
        public double Number(string key) => numbers.TryGetValue(key, out var v) ? v : double.NaN;

        // The keys of the flat object "numbers":{"k":1.0,...} of the result's JSON (keys are plain names).
        static IEnumerable<string> NumberKeys(string json)
        {
            var at = json.IndexOf("\"numbers\":{", StringComparison.Ordinal);
            if (at < 0) yield break;
            int i = at + 11;
            while (i < json.Length && json[i] != '}')
            {
                if (json[i] == '"')
                {
                    int end = json.IndexOf('"', i + 1);
                    if (end < 0) yield break;
                    yield return json.Substring(i + 1, end - i - 1);
                    i = end + 1;
                    while (i < json.Length && json[i] != ',' && json[i] != '}') i++;  // the value
                }
                else i++;
            }
        }
    }

    public sealed class Runtime : IDisposable
    {
        internal IntPtr Handle;
        public Runtime(string device = "auto", int threads = 0)
        {
            Library.CheckLayouts();
            var dev = Marshal.StringToHGlobalAnsi(device);
            try
            {
                var o = Native.Init<RuntimeOptions>(Native.loupe_runtime_options_init);
                o.Device = dev;
                o.NumThreads = threads;
                Native.Check(Native.loupe_runtime_create(out Handle, ref o));
            }
            finally { Marshal.FreeHGlobal(dev); }
        }
        public static string Version => Library.Version;
        public string Diagnostics()
        {
            Native.Check(Native.loupe_runtime_diagnostics(Handle, out var p));
            return Native.TakeString(p);
        }
        public Session OpenSession(string path) => new Session(this, path);
        /// <summary>Runs a runtime task of the table ("selftest", "download"); onProgress may return false to cancel.</summary>
        public Result Run(string task, IDictionary<string, object> parameters = null, Func<int, int, string, bool> onProgress = null) =>
            Job.Run((out IntPtr job, IntPtr rq, ProgressFn fn) => Native.loupe_runtime_submit(out job, Handle, rq, fn, IntPtr.Zero),
                    task, Library.Task(task), null, null, parameters, onProgress);
        /// <summary>Runs the device self-test; onProgress may return false to cancel.</summary>
        public Result SelfTest(Func<int, int, string, bool> onProgress = null, long matmulSize = 0) =>
            Run("selftest", matmulSize > 0 ? new Dictionary<string, object> { ["matmul_size"] = matmulSize } : null, onProgress);
        public void Dispose() { if (Handle != IntPtr.Zero) { Native.loupe_runtime_free(Handle); Handle = IntPtr.Zero; } }
    }

    public sealed class SessionDescription
    {
        public string Family, Variant, Tasks, Device, Dtype, Path;  // Tasks: comma-separated
        public ulong Bytes;
        public bool Resident;
    }

    public sealed class Session : IDisposable
    {
        IntPtr handle;
        internal Session(Runtime rt, string path)
        {
            var o = Native.Init<SessionOptions>(Native.loupe_session_options_init);
            Native.Check(Native.loupe_session_open(out handle, rt.Handle, Native.Utf8(path), ref o));
        }
        /// <summary>What the session holds (loupe_session_describe).</summary>
        public SessionDescription Describe()
        {
            var info = Native.Init<SessionInfo>(Native.loupe_session_info_init);
            Native.Check(Native.loupe_session_describe(handle, ref info));
            return new SessionDescription {
                Family = Native.Str(info.Family), Variant = Native.Str(info.Variant), Tasks = Native.Str(info.Tasks),
                Device = Native.Str(info.Device), Dtype = Native.Str(info.Dtype), Path = Native.Str(info.Path),
                Bytes = info.Bytes, Resident = info.Resident != 0 };
        }
        /// <summary>The tasks this model offers, with defaults and ranges fitted to it.</summary>
        public TaskInfo[] Tasks() => TaskInfo.All(handle);
        /// <summary>One task; LoupeException NotFound (naming what the model offers) if not offered.</summary>
        public TaskInfo Task(string name) => TaskInfo.Find(handle, name);
        public string TasksJson() => TaskInfo.Json(handle);

        /// <summary>Runs a task on an RGBA8 image (width x height x 4 bytes; null for none). parameters:
        /// the task's parameters by name (any CLR value; set with the setter the description's type
        /// needs) and its text input under its key (or "text"/"prompt").</summary>
        public Result Run(string task, byte[] rgba, int width, int height, IDictionary<string, object> parameters = null,
                          Func<int, int, string, bool> onProgress = null, byte[] mask = null)
        {
            var pin = rgba != null ? GCHandle.Alloc(rgba, GCHandleType.Pinned) : default(GCHandle);
            var pinMask = mask != null ? GCHandle.Alloc(mask, GCHandleType.Pinned) : default(GCHandle);
            try
            {
                Image? im = null, mk = null;
                if (rgba != null) im = new Image { Width = width, Height = height, Stride = width * 4, Format = 1, Data = pin.AddrOfPinnedObject() };
                if (mask != null) mk = new Image { Width = width, Height = height, Stride = width, Format = 3, Data = pinMask.AddrOfPinnedObject() };
                TaskInfo desc = null;
                try { desc = Task(task); } catch (LoupeException) { }  // not offered: submit says so
                return Job.Run((out IntPtr job, IntPtr rq, ProgressFn fn) => Native.loupe_session_submit(out job, handle, rq, fn, IntPtr.Zero),
                               task, desc, im, mk, parameters, onProgress);
            }
            finally
            {
                if (pin.IsAllocated) pin.Free();
                if (pinMask.IsAllocated) pinMask.Free();
            }
        }
        /// <summary>Runs a task without an image (txt2img).</summary>
        public Result Run(string task, IDictionary<string, object> parameters = null, Func<int, int, string, bool> onProgress = null) =>
            Run(task, null, 0, 0, parameters, onProgress);
        public void Dispose() { if (handle != IntPtr.Zero) { Native.loupe_session_close(handle); handle = IntPtr.Zero; } }
    }

    internal static class Job
    {
        public delegate int Submit(out IntPtr job, IntPtr rq, ProgressFn fn);
        public static Result Run(Submit submit, string task, TaskInfo desc, Image? image, Image? mask,
                                 IDictionary<string, object> parameters, Func<int, int, string, bool> onProgress)
        {
            Native.Check(Native.loupe_request_create(out var rq, Native.Utf8(task)));
            IntPtr job;
            // The delegate must stay alive while the job runs (the worker thread calls it).
            ProgressFn fn = (IntPtr u, ref Progress p) =>
                onProgress == null || onProgress(p.Step, p.Total, Marshal.PtrToStringUTF8(p.Stage)) ? 1 : 0;
            try
            {
                if (image.HasValue) { var im = image.Value; Native.Check(Native.loupe_request_set_image(rq, ref im)); }
                if (mask.HasValue) { var mk = mask.Value; Native.Check(Native.loupe_request_set_mask(rq, ref mk)); }
                if (parameters != null)
                    foreach (var kv in parameters) Set(rq, desc, kv.Key, kv.Value);
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

        static bool IsInteger(object v) => v is bool || v is sbyte || v is byte || v is short || v is ushort || v is int ||
                                           v is uint || v is long;
        static bool IsReal(object v) => v is float || v is double || v is decimal;

        /// <summary>Sets one parameter with the setter its described type needs. What the description
        /// cannot type (unknown keys, text that is no number) goes as it is: the library refuses it at
        /// submit, naming the task, the key and what it accepts.</summary>
        internal static void Set(IntPtr rq, TaskInfo desc, string key, object value)
        {
            if (value == null) return;  // the model's default
            if (desc != null && desc.TextKey.Length > 0 && (key == "text" || key == "prompt" || key == "question")) key = desc.TextKey;
            var p = desc?.Param(key);
            var k = Native.Utf8(key);
            var inv = CultureInfo.InvariantCulture;
            object v = value;
            if (v is string s && p != null && p.Type != ParamType.String && p.Type != ParamType.Choice)
            {
                var t = s.Trim().ToLowerInvariant();
                if (p.Type == ParamType.Bool && (t == "true" || t == "on" || t == "yes")) v = 1L;
                else if (p.Type == ParamType.Bool && (t == "false" || t == "off" || t == "no")) v = 0L;
                else if (p.Type != ParamType.Float && long.TryParse(t, NumberStyles.Integer, inv, out var l)) v = l;
                else if (double.TryParse(t, NumberStyles.Float, inv, out var d)) v = d;
            }
            switch (p?.Type)
            {
                case ParamType.Int:
                case ParamType.Bool:
                    if (IsReal(v) && Convert.ToDouble(v, inv) == Math.Floor(Convert.ToDouble(v, inv))) v = Convert.ToInt64(v, inv);
                    if (IsInteger(v)) { Native.Check(Native.loupe_request_set_int(rq, k, Convert.ToInt64(v, inv))); return; }
                    if (IsReal(v)) { Native.Check(Native.loupe_request_set_float(rq, k, Convert.ToDouble(v, inv))); return; }  // the library: must be whole
                    break;
                case ParamType.Float:
                    if (IsInteger(v) || IsReal(v)) { Native.Check(Native.loupe_request_set_float(rq, k, Convert.ToDouble(v, inv))); return; }
                    break;
                case ParamType.String:
                case ParamType.Choice:
                    Native.Check(Native.loupe_request_set_string(rq, k, Native.Utf8(Convert.ToString(v, inv))));
                    return;
            }
            // Not described (the text input, or a key the task does not have), or not of the type.
            if (IsInteger(v)) Native.Check(Native.loupe_request_set_int(rq, k, Convert.ToInt64(v, inv)));
            else if (IsReal(v)) Native.Check(Native.loupe_request_set_float(rq, k, Convert.ToDouble(v, inv)));
            else Native.Check(Native.loupe_request_set_string(rq, k, Native.Utf8(Convert.ToString(v, inv))));
        }
    }
}
