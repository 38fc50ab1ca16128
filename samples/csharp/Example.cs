// The C# sample (run by CTest): layouts checked against the library, the task description,
// self-test, then (with a Florence-2 folder) tasks on a generated image with parameters typed by
// the description, boxes and polygons with their kind, and the library's error messages.
// Usage: mono loupe-example.exe [MODEL_DIR]   (libloupe.so must be on LD_LIBRARY_PATH)
using System;
using System.Collections.Generic;
using Loupe;

static class Example
{
    static void Expect(bool ok, string what)
    {
        if (!ok) throw new Exception("check failed: " + what);
    }

    // The library's message for a request it refuses.
    static void ExpectRefused(Func<Result> run, string message)
    {
        try { run(); }
        catch (LoupeException e)
        {
            Console.WriteLine("expected error: " + e.Message);
            Expect(e.Status == Status.InvalidArgument && e.Message.Contains(message), "the message names " + message);
            return;
        }
        throw new Exception("not refused: " + message);
    }

    static int Main(string[] args)
    {
        try
        {
            Console.WriteLine("Loupe " + Runtime.Version);
            Library.CheckLayouts();

            // The library's task table: every task with its parameters, typed.
            var txt2img = Library.Task("txt2img");
            var steps = txt2img.Param("steps");
            Console.WriteLine($"txt2img: {txt2img.Params.Length} parameters; steps: {steps.Type}, default {steps.Default}, {steps.Min} to {steps.Max}");
            Expect(steps.Type == ParamType.Int && steps.Default == 20 && steps.Max == 150, "steps described");
            Expect(Array.IndexOf(txt2img.Param("sampler").Choices, "ddim") >= 0, "sampler choices");
            Expect(txt2img.TextKey == "prompt" && (txt2img.Outputs & Outputs.Images) != 0, "txt2img's text and output");
            Expect(Library.Task("selftest").Runtime, "selftest runs on the runtime");
            Expect(Library.TasksJson().Contains("\"name\": \"inpaint\""), "the description as JSON");
            try { Library.Task("txt2imgg"); return 1; }
            catch (LoupeException e) { Console.WriteLine("expected error: " + e.Message); Expect(e.Status == Status.NotFound, "unknown task"); }

            using (var rt = new Runtime("cpu"))
            {
                var st = rt.SelfTest((step, total, stage) => true, matmulSize: 64);
                Console.WriteLine(st.Text);
                if (st.Number("ok") != 1) return 1;
                Expect(st.Numbers.ContainsKey("matmul_tflops"), "every number of the result");
                ExpectRefused(() => rt.Run("selftest", new Dictionary<string, object> { ["matmul_size"] = "lots" }), "'matmul_size' is an integer");
                if (args.Length > 0)
                {
                    // The pattern of the Python binding's test: greedy decoding of the tiny model writes
                    // boxes, quads (ocr_regions) and outlines (segment) for it.
                    const int w = 64, h = 48;
                    var px = new byte[w * h * 4];
                    for (int y = 0; y < h; y++)
                        for (int x = 0; x < w; x++)
                        {
                            for (int c = 0; c < 3; c++) px[(y * w + x) * 4 + c] = (byte)((x * 7 + y * 3 + c * 50) % 256);
                            px[(y * w + x) * 4 + 3] = 255;
                        }
                    using (var s = rt.OpenSession(args[0]))
                    {
                        var d = s.Describe();
                        Console.WriteLine($"{d.Family} {d.Variant}: {d.Tasks}");
                        var offered = s.Tasks();
                        Expect(offered.Length == d.Tasks.Split(',').Length, "the session's tasks");
                        var tokens = s.Task("caption").Param("max_new_tokens");
                        Console.WriteLine($"max_new_tokens for this model: default {tokens.Default}, at most {tokens.Max}");
                        Expect(tokens.Max < Library.Task("caption").Param("max_new_tokens").Max, "limits fitted to the model");
                        try { s.Task("txt2img"); return 1; }
                        catch (LoupeException e) { Console.WriteLine("expected error: " + e.Message); Expect(e.Status == Status.NotFound, "not offered"); }

                        // Typed by the description: a string and a double become the int parameters.
                        var res = s.Run("detect", px, w, h, new Dictionary<string, object> { ["max_new_tokens"] = "60", ["num_beams"] = 1.0 });
                        Console.WriteLine("detect: " + res.Boxes.Length + " boxes");
                        foreach (var b in res.Boxes)
                        {
                            Console.WriteLine($"  {b.Kind} {b.Label} [{b.X0}, {b.Y0}, {b.X1}, {b.Y1}]");
                            Expect(b.Kind == ShapeKind.Box, "box kind");
                        }
                        int quads = 0, outlines = 0;
                        foreach (var pair in new[] { new[] { "ocr_regions", null }, new[] { "segment", "a car" } })
                        {
                            string task = pair[0], text = pair[1];
                            var r = s.Run(task, px, w, h, new Dictionary<string, object> { ["text"] = text, ["max_new_tokens"] = 60, ["num_beams"] = 1 });
                            foreach (var p in r.Polygons)
                            {
                                Console.WriteLine($"  {task}: {p.Kind} '{p.Label}' {p.PointCount} points, group {p.Group}");
                                if (task == "ocr_regions") { Expect(p.Kind == ShapeKind.Quad && p.PointCount == 4, "OCR quads"); quads++; }
                                else { Expect(p.Kind == ShapeKind.Polygon && p.PointCount >= 1, "outlines"); outlines++; }
                            }
                        }
                        Expect(quads > 0 && outlines > 0, "quads and outlines read back");

                        // Refused by the library at submit, with its message.
                        ExpectRefused(() => s.Run("ground", px, w, h), "needs a caption");
                        ExpectRefused(() => s.Run("detect", px, w, h, new Dictionary<string, object> { ["beams"] = 2 }), "has no parameter 'beams'");
                        ExpectRefused(() => s.Run("detect", px, w, h, new Dictionary<string, object> { ["num_beams"] = 99 }), "out of range");
                        ExpectRefused(() => s.Run("detect", px, w, h, new Dictionary<string, object> { ["num_beams"] = 1.5 }), "must be a whole number");
                    }
                }
            }
            try { using (new Runtime("gpu9")) { } return 1; }
            catch (LoupeException e) { Console.WriteLine("expected error: " + e.Message); }
            Console.WriteLine("csharp sample: ok");
            return 0;
        }
        catch (LoupeException e)
        {
            Console.Error.WriteLine("Loupe: " + e.Message);
            return 1;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("csharp sample: " + e.Message);
            return 1;
        }
    }
}
