// The C# sample: self-test, then (with a model folder) detection on a generated image.
// Usage: mono loupe-example.exe [MODEL_DIR]   (libloupe.so must be on LD_LIBRARY_PATH)
using System;
using Loupe;

static class Example
{
    static int Main(string[] args)
    {
        try
        {
            Console.WriteLine("Loupe " + Runtime.Version);
            using (var rt = new Runtime("cpu"))
            {
                var st = rt.SelfTest((step, total, stage) => true, matmulSize: 64);
                Console.WriteLine(st.Text);
                if (st.Number("ok") != 1) return 1;
                if (args.Length > 0)
                {
                    const int w = 48, h = 32;
                    var px = new byte[w * h * 4];
                    for (int i = 0; i < px.Length; i++) px[i] = (byte)(i * 7);
                    using (var s = rt.OpenSession(args[0]))
                    {
                        var res = s.Run("detect", px, w, h, maxNewTokens: 10);
                        Console.WriteLine("detect: " + res.Boxes.Length + " boxes");
                        foreach (var b in res.Boxes) Console.WriteLine($"  {b.Label} [{b.X0}, {b.Y0}, {b.X1}, {b.Y1}]");
                        try { s.Run("ground", px, w, h); return 1; }  // no text: must fail with the SDK's message
                        catch (LoupeException e) { Console.WriteLine("expected error: " + e.Message); if (e.Status != Status.InvalidArgument) return 1; }
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
    }
}
