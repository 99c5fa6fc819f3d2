// privhead's mesh viewer: a binary little-endian PLY (as trimesh writes it) drawn with WebGL 1,
// Lambert-shaded, turned by dragging. No library, nothing loaded from the network.
var privheadViewer = (function () {
  var TYPES = {char: 1, uchar: 1, int8: 1, uint8: 1, short: 2, ushort: 2, int16: 2, uint16: 2,
               int: 4, uint: 4, int32: 4, uint32: 4, float: 4, float32: 4, double: 8, float64: 8};
  function read(view, offset, type) {
    switch (type) {
      case 'char': case 'int8': return view.getInt8(offset);
      case 'uchar': case 'uint8': return view.getUint8(offset);
      case 'short': case 'int16': return view.getInt16(offset, true);
      case 'ushort': case 'uint16': return view.getUint16(offset, true);
      case 'int': case 'int32': return view.getInt32(offset, true);
      case 'uint': case 'uint32': return view.getUint32(offset, true);
      case 'float': case 'float32': return view.getFloat32(offset, true);
      default: return view.getFloat64(offset, true);
    }
  }
  function parsePly(buffer) {
    var bytes = new Uint8Array(buffer);
    var end = 0, text = '';
    while (end < bytes.length) {
      text += String.fromCharCode(bytes[end]); end++;
      if (text.endsWith('end_header\n')) break;
    }
    var lines = text.split('\n'), elements = [], current = null;
    if (lines.indexOf('format binary_little_endian 1.0') < 0) throw new Error('not a binary PLY');
    lines.forEach(function (line) {
      var p = line.trim().split(/\s+/);
      if (p[0] === 'element') { current = {name: p[1], count: +p[2], props: []}; elements.push(current); }
      else if (p[0] === 'property' && p[1] === 'list') current.props.push({list: true, count: p[2], type: p[3], name: p[4]});
      else if (p[0] === 'property') current.props.push({type: p[1], name: p[2]});
    });
    var view = new DataView(buffer), offset = end, vertices = null, faces = [];
    elements.forEach(function (el) {
      if (el.name === 'vertex') vertices = new Float32Array(el.count * 3);
      for (var i = 0; i < el.count; i++) {
        el.props.forEach(function (prop) {
          if (prop.list) {
            var n = read(view, offset, prop.count); offset += TYPES[prop.count];
            var ids = [];
            for (var k = 0; k < n; k++) { ids.push(read(view, offset, prop.type)); offset += TYPES[prop.type]; }
            if (el.name === 'face') for (var k2 = 1; k2 + 1 < n; k2++) faces.push(ids[0], ids[k2], ids[k2 + 1]);
          } else {
            var value = read(view, offset, prop.type); offset += TYPES[prop.type];
            if (el.name === 'vertex' && 'xyz'.indexOf(prop.name) >= 0 && prop.name.length === 1)
              vertices[i * 3 + 'xyz'.indexOf(prop.name)] = value;
          }
        });
      }
    });
    return {vertices: vertices, faces: new Uint32Array(faces)};
  }
  function flatten(mesh) {
    // Per-face normals; positions centred and scaled into the unit cube.
    var v = mesh.vertices, f = mesh.faces, n = f.length;
    var lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (var i = 0; i < v.length; i++) { lo[i % 3] = Math.min(lo[i % 3], v[i]); hi[i % 3] = Math.max(hi[i % 3], v[i]); }
    var c = [0, 1, 2].map(function (k) { return (lo[k] + hi[k]) / 2; });
    var s = 1.6 / Math.max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]);
    var pos = new Float32Array(n * 3), nor = new Float32Array(n * 3);
    for (var t = 0; t < n; t += 3) {
      var a = [], b, e1 = [], e2 = [];
      for (var k = 0; k < 3; k++) for (var d = 0; d < 3; d++) pos[(t + k) * 3 + d] = (v[f[t + k] * 3 + d] - c[d]) * s;
      for (d = 0; d < 3; d++) { e1[d] = pos[(t + 1) * 3 + d] - pos[t * 3 + d]; e2[d] = pos[(t + 2) * 3 + d] - pos[t * 3 + d]; }
      a = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
      b = Math.hypot(a[0], a[1], a[2]) || 1;
      for (k = 0; k < 3; k++) for (d = 0; d < 3; d++) nor[(t + k) * 3 + d] = a[d] / b;
    }
    return {pos: pos, nor: nor, count: n};
  }
  function shader(gl, type, source) {
    var s = gl.createShader(type); gl.shaderSource(s, source); gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  function show(canvas, buffer) {
    var mesh = parsePly(buffer), flat = flatten(mesh);
    var gl = canvas.getContext('webgl', {preserveDrawingBuffer: true});
    var program = gl.createProgram();
    gl.attachShader(program, shader(gl, gl.VERTEX_SHADER,
      'attribute vec3 p; attribute vec3 n; uniform mat3 r; varying float l;' +
      'void main() { vec3 q = r * p; vec3 m = r * n; l = 0.25 + 0.75 * abs(dot(normalize(m), normalize(vec3(0.4, 0.5, 1.0))));' +
      ' gl_Position = vec4(q.xy, -q.z * 0.5, 1.0); }'));
    gl.attachShader(program, shader(gl, gl.FRAGMENT_SHADER,
      'precision mediump float; varying float l; void main() { gl_FragColor = vec4(vec3(0.85, 0.8, 0.75) * l, 1.0); }'));
    gl.linkProgram(program); gl.useProgram(program);
    function attribute(name, data) {
      var b = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, b); gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
      var loc = gl.getAttribLocation(program, name); gl.enableVertexAttribArray(loc); gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
    }
    attribute('p', flat.pos); attribute('n', flat.nor);
    var yaw = 0, pitch = 0, dragging = null, r = gl.getUniformLocation(program, 'r');
    function draw() {
      var cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
      gl.uniformMatrix3fv(r, false, new Float32Array([cy, sp * sy, -cp * sy, 0, cp, sp, sy, -sp * cy, cp * cy]));
      gl.viewport(0, 0, canvas.width, canvas.height); gl.clearColor(1, 1, 1, 1); gl.enable(gl.DEPTH_TEST);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT); gl.drawArrays(gl.TRIANGLES, 0, flat.count);
    }
    canvas.onpointerdown = function (e) { dragging = [e.clientX, e.clientY]; };
    canvas.onpointerup = function () { dragging = null; };
    canvas.onpointermove = function (e) {
      if (!dragging) return;
      yaw += (e.clientX - dragging[0]) * 0.01; pitch += (e.clientY - dragging[1]) * 0.01; dragging = [e.clientX, e.clientY]; draw();
    };
    draw();
    return {vertices: mesh.vertices.length / 3, faces: mesh.faces.length / 3};
  }
  return {show: show, parsePly: parsePly};
})();
