#include "pipelines/edit.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#include "core/edit.h"
#include "core/error.h"
#include "core/tasks.h"

namespace loupe::pipelines {

Image region_mask(const std::vector<Polygon>& polygons, const std::vector<Box>& boxes, int W, int H) {
  Image m;
  m.width = W;
  m.height = H;
  m.channels = 1;
  m.pixels.assign(size_t(W) * H, 0);
  std::vector<double> xs;
  for (const auto& poly : polygons) {
    const size_t n = poly.points.size() / 2;
    if (n < 3) continue;  // a point or a segment covers no pixel centre
    for (int y = 0; y < H; ++y) {
      const double cy = y + 0.5;
      xs.clear();
      for (size_t i = 0; i < n; ++i) {
        const double x0 = poly.points[2 * i], y0 = poly.points[2 * i + 1];
        const double x1 = poly.points[2 * ((i + 1) % n)], y1 = poly.points[2 * ((i + 1) % n) + 1];
        if ((y0 <= cy && cy < y1) || (y1 <= cy && cy < y0)) xs.push_back(x0 + (cy - y0) * (x1 - x0) / (y1 - y0));
      }
      std::sort(xs.begin(), xs.end());
      uint8_t* row = m.row(y);
      for (size_t k = 0; k + 1 < xs.size(); k += 2) {
        // pixels whose centre x + 0.5 lies in [xs[k], xs[k+1])
        const int a = std::max(0, int(std::ceil(xs[k] - 0.5)));
        const int b = std::min(W, int(std::ceil(xs[k + 1] - 0.5)));
        for (int x = a; x < b; ++x) row[x] = 255;
      }
    }
  }
  for (const auto& b : boxes) {
    const int x0 = std::max(0, int(std::ceil(double(b.x0) - 0.5))), x1 = std::min(W, int(std::ceil(double(b.x1) - 0.5)));
    const int y0 = std::max(0, int(std::ceil(double(b.y0) - 0.5))), y1 = std::min(H, int(std::ceil(double(b.y1) - 0.5)));
    for (int y = y0; y < y1; ++y) std::fill(m.row(y) + x0, m.row(y) + std::max(x0, x1), uint8_t(255));
  }
  return m;
}

namespace {
// Felzenszwalb & Huttenlocher's 1-D squared distance transform of f (n values) into d.
void edt1d(const double* f, int n, double* d, std::vector<int>& v, std::vector<double>& z) {
  const double inf = std::numeric_limits<double>::infinity();
  int k = 0;
  v[0] = 0;
  z[0] = -inf;
  z[1] = inf;
  auto meet = [&](int q, int p) { return ((f[q] + double(q) * q) - (f[p] + double(p) * p)) / (2.0 * q - 2.0 * p); };
  for (int q = 1; q < n; ++q) {
    double s = meet(q, v[k]);
    while (s <= z[k]) s = meet(q, v[--k]);  // z[0] = -inf ends the loop
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = inf;
  }
  k = 0;
  for (int q = 0; q < n; ++q) {
    while (z[k + 1] < q) ++k;
    d[q] = double(q - v[k]) * (q - v[k]) + f[v[k]];
  }
}
}  // namespace

Image grow_mask(const Image& mask, int radius) {
  const int W = mask.width, H = mask.height;
  Image out;
  out.width = W;
  out.height = H;
  out.channels = 1;
  out.pixels.assign(size_t(W) * H, 0);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) out.row(y)[x] = mask.row(y)[x * mask.channels] >= 128 ? 255 : 0;
  if (radius <= 0 || W == 0 || H == 0) return out;
  // squared distance to the nearest masked pixel: columns, then rows (separable, exact)
  const double big = 1e18;  // no masked pixel in the column: larger than any squared distance
  std::vector<double> g(size_t(W) * H), f(std::max(W, H)), d(std::max(W, H));
  std::vector<int> v(std::max(W, H));
  std::vector<double> z(std::max(W, H) + 1);
  for (int x = 0; x < W; ++x) {
    for (int y = 0; y < H; ++y) f[y] = out.row(y)[x] ? 0.0 : big;
    edt1d(f.data(), H, d.data(), v, z);
    for (int y = 0; y < H; ++y) g[size_t(y) * W + x] = d[y];
  }
  const double r2 = double(radius) * radius;
  for (int y = 0; y < H; ++y) {
    edt1d(&g[size_t(y) * W], W, d.data(), v, z);
    for (int x = 0; x < W; ++x)
      if (d[x] <= r2) out.row(y)[x] = 255;
  }
  return out;
}

size_t mask_area(const Image& mask) {
  size_t n = 0;
  for (int y = 0; y < mask.height; ++y)
    for (int x = 0; x < mask.width; ++x) n += mask.row(y)[x * mask.channels] >= 128;
  return n;
}

}  // namespace loupe::pipelines

namespace loupe::edit {

namespace {

bool offers(const Model& m, const std::string& task) {
  for (const auto& t : m.tasks())
    if (t.name == task) return true;
  return false;
}

std::string offered(const Model& m) {
  std::string s;
  for (const auto& t : m.tasks()) s += (s.empty() ? "" : ", ") + t.name;
  return s.empty() ? "nothing" : s;
}

// The finder's task for the request's find_with: segment (outlines) first, else boxes.
std::string finder_task(const Request& r, const Model& m) {
  const std::string how = r.text("find_with");
  if (how != "boxes" && offers(m, "segment")) return "segment";
  if (how == "segment") return "";
  if (offers(m, "open_vocabulary_detect")) return "open_vocabulary_detect";
  if (offers(m, "ground")) return "ground";
  return "";
}

const tasks::Task* offered_task(const Model& m, const std::string& name, std::vector<tasks::Task>& storage) {
  storage = m.tasks();
  for (const auto& t : storage)
    if (t.name == name) return &t;
  return nullptr;
}

// Copies the edit request's values of the parameters `spec` has (same names, same meaning).
void copy_params(const Request& from, const tasks::Task& spec, Request& to) {
  for (const auto& p : spec.params) {
    if (auto i = from.ints.find(p.name); i != from.ints.end()) to.ints[p.name] = i->second;
    if (auto f = from.floats.find(p.name); f != from.floats.end()) to.floats[p.name] = f->second;
    if (auto s = from.strings.find(p.name); s != from.strings.end()) to.strings[p.name] = s->second;
  }
}

Request find_request(const Request& r, const Model& finder, const std::string& task) {
  Request f;
  f.task = task;
  f.images = {r.image()};
  f.strings["text"] = r.text("target");  // segment, open_vocabulary_detect and ground all take it as "text"
  // 0 = the finder's own default (its generation config)
  for (const char* key : {"max_new_tokens", "num_beams"})
    if (r.integer(key) > 0) f.ints[key] = r.integer(key);
  (void)finder;
  return f;
}

Request paint_request(const Request& r, const Model& painter, const Image& mask) {
  std::vector<tasks::Task> storage;
  const tasks::Task* spec = offered_task(painter, "inpaint", storage);
  if (!spec) LOUPE_THROW(Internal, "the painter no longer offers inpaint");
  Request p;
  p.task = "inpaint";
  p.images = {r.image()};
  p.mask = mask;
  copy_params(r, *spec, p);
  p.strings["prompt"] = r.text("prompt");  // "" = remove: the model fills the area from its surroundings
  return p;
}

// Runs one part of the chain on its own JobContext: its progress is the job's, with the stage
// named "<part>: <stage>"; a cancel of the job stops it at its next step.
Result run_part(Model& m, const Request& req, JobContext& ctx, const std::string& part) {
  Job child([&ctx, &part](const Progress& p) {
    ctx.progress(p.step, p.total, p.stage.empty() ? part : part + ": " + p.stage, p.preview);  // throws if cancelled
    return true;
  });
  JobContext sub(&child);
  sub.set_wants_preview(ctx.wants_preview());
  ctx.check_cancelled();
  return m.run(req, sub);
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

}  // namespace

void check(const Request& r, const Part* finder, const Part* painter) {
  if (r.task != "edit") LOUPE_THROW(InvalidArgument, "an edit job runs task 'edit', not '" << r.task << "'");
  const std::string target = r.text("target");
  if (!r.mask) {
    if (!finder || !finder->model)
      LOUPE_THROW(InvalidArgument, "task 'edit': the finder session is NULL; it finds " << quoted(target)
                                   << " in the image (a session that offers segment, open_vocabulary_detect or ground, "
                                      "e.g. Florence-2), unless a mask is given");
    if (finder_task(r, *finder->model).empty()) {
      const std::string how = r.text("find_with");
      LOUPE_THROW(InvalidArgument, "task 'edit': the finder " << finder->name << " cannot "
                                   << (how == "segment" ? "segment (find_with = segment)"
                                                        : how == "boxes" ? "find boxes (find_with = boxes)"
                                                                         : "segment or ground")
                                   << "; it offers " << offered(*finder->model)
                                   << "; use a session that offers "
                                   << (how == "segment" ? "segment" : how == "boxes" ? "open_vocabulary_detect or ground"
                                                                                     : "segment, open_vocabulary_detect or ground")
                                   << " (e.g. Florence-2)");
    }
  } else {
    const Image& img = r.image();
    if (r.mask->width != img.width || r.mask->height != img.height)
      LOUPE_THROW(InvalidArgument, "task 'edit': the mask is " << r.mask->width << "x" << r.mask->height << " but the image is "
                                   << img.width << "x" << img.height << "; they must be the same size");
  }
  if (r.flag("paint")) {
    if (!painter || !painter->model)
      LOUPE_THROW(InvalidArgument, "task 'edit': the painter session is NULL; it repaints the found area (a session that "
                                   "offers inpaint, e.g. Stable Diffusion), unless paint = 0 (find and mask only)");
    if (!offers(*painter->model, "inpaint"))
      LOUPE_THROW(InvalidArgument, "task 'edit': the painter " << painter->name << " cannot inpaint; it offers "
                                   << offered(*painter->model) << "; use a session that offers inpaint (e.g. Stable Diffusion)");
  }
  // The finder's request is checked against its own description now, so a bad value fails at submit.
  if (!r.mask) {
    Request f = find_request(r, *finder->model, finder_task(r, *finder->model));
    std::vector<tasks::Task> storage;
    tasks::resolve(*offered_task(*finder->model, f.task, storage), f);
  }
}

std::unique_ptr<Result> run(const Request& r, const Part* finder, const Part* painter, JobContext& ctx) {
  const Image& image = r.image();
  const std::string target = r.text("target");
  const bool paint = r.flag("paint");
  auto res = std::make_unique<Result>();
  res->task = "edit";
  Image mask;
  if (r.mask) {
    // a mask given (e.g. the found one, adjusted by hand) is used as it is: no find, no growth
    ctx.progress(0, 1, "mask");
    mask = pipelines::grow_mask(*r.mask, 0);
    if (pipelines::mask_area(mask) == 0)
      LOUPE_THROW(InvalidArgument, "task 'edit': the mask given is empty: paint the area to repaint in white (255)");
    res->strings["found_by"] = "mask";
  } else {
    ctx.progress(0, 1, "find");
    auto model = finder->resident();
    const std::string task = finder_task(r, *model);
    Result found = run_part(*model, find_request(r, *model, task), ctx, "find");
    model.reset();
    ctx.progress(0, 1, "mask");
    // segmentation: the outlines; boxes only when no outline came back (open_vocabulary_detect
    // answers with either)
    const std::vector<Box> no_boxes;
    mask = pipelines::region_mask(found.polygons, found.polygons.empty() ? found.boxes : no_boxes, image.width, image.height);
    if (pipelines::mask_area(mask) == 0)
      LOUPE_THROW(NotFound, "no " << quoted(target) << " found in the image (the finder " << finder->name << ", task " << task
                                  << ", returned " << (found.polygons.size() + found.boxes.size() == 0 ? "no region"
                                                                                                     : "only empty regions")
                                  << "); hint: describe it differently, or paint the mask yourself");
    res->strings["found_by"] = task;
    // the found regions: outlines as they came, and a box around each object
    res->polygons = found.polygons;
    for (auto& p : res->polygons)
      if (p.label.empty()) p.label = target;
    if (!found.polygons.empty()) {
      std::map<int, Box> groups;
      for (const auto& p : found.polygons) {
        if (p.points.size() < 2) continue;
        auto [it, fresh] = groups.try_emplace(p.group);
        Box& b = it->second;
        if (fresh) {
          b.x0 = b.x1 = p.points[0];
          b.y0 = b.y1 = p.points[1];
        }
        for (size_t i = 0; i + 1 < p.points.size(); i += 2) {
          b.x0 = std::min(b.x0, p.points[i]);
          b.x1 = std::max(b.x1, p.points[i]);
          b.y0 = std::min(b.y0, p.points[i + 1]);
          b.y1 = std::max(b.y1, p.points[i + 1]);
        }
        b.label = target;
      }
      for (auto& [g, b] : groups) res->boxes.push_back(b);
    } else {
      res->boxes = found.boxes;
      for (auto& b : res->boxes)
        if (b.label.empty()) b.label = target;
    }
    mask = pipelines::grow_mask(mask, static_cast<int>(r.integer("grow")));
  }
  ctx.progress(1, 1, "mask");
  res->numbers["regions"] = static_cast<double>(res->boxes.size());
  res->numbers["mask_pixels"] = static_cast<double>(pipelines::mask_area(mask));
  res->strings["mode"] = r.text("prompt").empty() ? "remove" : "replace";
  if (paint) {
    ctx.progress(0, 1, "paint");
    auto model = painter->resident();
    Result painted = run_part(*model, paint_request(r, *model, mask), ctx, "paint");
    if (painted.images.empty()) LOUPE_THROW(Internal, "the painter returned no image");
    Image edited = std::move(painted.images.front());
    if (image.channels == 4 && edited.channels == 3 && edited.width == image.width && edited.height == image.height) {
      // an RGBA input keeps its alpha
      Image rgba = image;
      for (size_t i = 0, n = size_t(image.width) * image.height; i < n; ++i)
        std::copy_n(&edited.pixels[i * 3], 3, &rgba.pixels[i * 4]);
      edited = std::move(rgba);
    }
    res->images.push_back(std::move(edited));
    for (const auto& [k, v] : painted.numbers) res->numbers[k] = v;
    for (const auto& [k, v] : painted.strings) res->strings["painter_" + k] = v;
  }
  res->images.push_back(std::move(mask));  // the mask is always the last image
  return res;
}

}  // namespace loupe::edit
