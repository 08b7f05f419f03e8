# siftc dump 01: pass 'capture' (transform)
# trace the model into a torch.fx GraphModule (deep copy; user model untouched); torch.export when fx cannot (policy capture=auto|fx|export)
# policy: factorized:0.5   target: cpu   pass options: none
# nodes: 0 -> 71 (+71)
# FLOPs: before n/a / after 2,228,228,096
# stats: {"decomposed_attention": 0, "lifted_modules": 0, "mode_ops": 0, "retraced": 1, "via": "fx"}

def forward(self, x):
    conv1 = self.conv1(x);  x = None
    bn1 = self.bn1(conv1);  conv1 = None
    relu = self.relu(bn1);  bn1 = None
    maxpool = self.maxpool(relu);  relu = None
    layer1_0_conv1 = getattr(self.layer1, "0").conv1(maxpool)
    layer1_0_bn1 = getattr(self.layer1, "0").bn1(layer1_0_conv1);  layer1_0_conv1 = None
    layer1_0_relu = getattr(self.layer1, "0").relu(layer1_0_bn1);  layer1_0_bn1 = None
    layer1_0_conv2 = getattr(self.layer1, "0").conv2(layer1_0_relu);  layer1_0_relu = None
    layer1_0_bn2 = getattr(self.layer1, "0").bn2(layer1_0_conv2);  layer1_0_conv2 = None
    add = layer1_0_bn2 + maxpool;  layer1_0_bn2 = maxpool = None
    layer1_0_relu_1 = getattr(self.layer1, "0").relu(add);  add = None
    layer1_1_conv1 = getattr(self.layer1, "1").conv1(layer1_0_relu_1)
    layer1_1_bn1 = getattr(self.layer1, "1").bn1(layer1_1_conv1);  layer1_1_conv1 = None
    layer1_1_relu = getattr(self.layer1, "1").relu(layer1_1_bn1);  layer1_1_bn1 = None
    layer1_1_conv2 = getattr(self.layer1, "1").conv2(layer1_1_relu);  layer1_1_relu = None
    layer1_1_bn2 = getattr(self.layer1, "1").bn2(layer1_1_conv2);  layer1_1_conv2 = None
    add_1 = layer1_1_bn2 + layer1_0_relu_1;  layer1_1_bn2 = layer1_0_relu_1 = None
    layer1_1_relu_1 = getattr(self.layer1, "1").relu(add_1);  add_1 = None
    layer2_0_conv1 = getattr(self.layer2, "0").conv1(layer1_1_relu_1)
    layer2_0_bn1 = getattr(self.layer2, "0").bn1(layer2_0_conv1);  layer2_0_conv1 = None
    layer2_0_relu = getattr(self.layer2, "0").relu(layer2_0_bn1);  layer2_0_bn1 = None
    layer2_0_conv2 = getattr(self.layer2, "0").conv2(layer2_0_relu);  layer2_0_relu = None
    layer2_0_bn2 = getattr(self.layer2, "0").bn2(layer2_0_conv2);  layer2_0_conv2 = None
    layer2_0_downsample_0 = getattr(getattr(self.layer2, "0").downsample, "0")(layer1_1_relu_1);  layer1_1_relu_1 = None
    layer2_0_downsample_1 = getattr(getattr(self.layer2, "0").downsample, "1")(layer2_0_downsample_0);  layer2_0_downsample_0 = None
    add_2 = layer2_0_bn2 + layer2_0_downsample_1;  layer2_0_bn2 = layer2_0_downsample_1 = None
    layer2_0_relu_1 = getattr(self.layer2, "0").relu(add_2);  add_2 = None
    layer2_1_conv1 = getattr(self.layer2, "1").conv1(layer2_0_relu_1)
    layer2_1_bn1 = getattr(self.layer2, "1").bn1(layer2_1_conv1);  layer2_1_conv1 = None
    layer2_1_relu = getattr(self.layer2, "1").relu(layer2_1_bn1);  layer2_1_bn1 = None
    layer2_1_conv2 = getattr(self.layer2, "1").conv2(layer2_1_relu);  layer2_1_relu = None
    layer2_1_bn2 = getattr(self.layer2, "1").bn2(layer2_1_conv2);  layer2_1_conv2 = None
    add_3 = layer2_1_bn2 + layer2_0_relu_1;  layer2_1_bn2 = layer2_0_relu_1 = None
    layer2_1_relu_1 = getattr(self.layer2, "1").relu(add_3);  add_3 = None
    layer3_0_conv1 = getattr(self.layer3, "0").conv1(layer2_1_relu_1)
    layer3_0_bn1 = getattr(self.layer3, "0").bn1(layer3_0_conv1);  layer3_0_conv1 = None
    layer3_0_relu = getattr(self.layer3, "0").relu(layer3_0_bn1);  layer3_0_bn1 = None
    layer3_0_conv2 = getattr(self.layer3, "0").conv2(layer3_0_relu);  layer3_0_relu = None
    layer3_0_bn2 = getattr(self.layer3, "0").bn2(layer3_0_conv2);  layer3_0_conv2 = None
    layer3_0_downsample_0 = getattr(getattr(self.layer3, "0").downsample, "0")(layer2_1_relu_1);  layer2_1_relu_1 = None
    layer3_0_downsample_1 = getattr(getattr(self.layer3, "0").downsample, "1")(layer3_0_downsample_0);  layer3_0_downsample_0 = None
    add_4 = layer3_0_bn2 + layer3_0_downsample_1;  layer3_0_bn2 = layer3_0_downsample_1 = None
    layer3_0_relu_1 = getattr(self.layer3, "0").relu(add_4);  add_4 = None
    layer3_1_conv1 = getattr(self.layer3, "1").conv1(layer3_0_relu_1)
    layer3_1_bn1 = getattr(self.layer3, "1").bn1(layer3_1_conv1);  layer3_1_conv1 = None
    layer3_1_relu = getattr(self.layer3, "1").relu(layer3_1_bn1);  layer3_1_bn1 = None
    layer3_1_conv2 = getattr(self.layer3, "1").conv2(layer3_1_relu);  layer3_1_relu = None
    layer3_1_bn2 = getattr(self.layer3, "1").bn2(layer3_1_conv2);  layer3_1_conv2 = None
    add_5 = layer3_1_bn2 + layer3_0_relu_1;  layer3_1_bn2 = layer3_0_relu_1 = None
    layer3_1_relu_1 = getattr(self.layer3, "1").relu(add_5);  add_5 = None
    layer4_0_conv1 = getattr(self.layer4, "0").conv1(layer3_1_relu_1)
    layer4_0_bn1 = getattr(self.layer4, "0").bn1(layer4_0_conv1);  layer4_0_conv1 = None
    layer4_0_relu = getattr(self.layer4, "0").relu(layer4_0_bn1);  layer4_0_bn1 = None
    layer4_0_conv2 = getattr(self.layer4, "0").conv2(layer4_0_relu);  layer4_0_relu = None
    layer4_0_bn2 = getattr(self.layer4, "0").bn2(layer4_0_conv2);  layer4_0_conv2 = None
    layer4_0_downsample_0 = getattr(getattr(self.layer4, "0").downsample, "0")(layer3_1_relu_1);  layer3_1_relu_1 = None
    layer4_0_downsample_1 = getattr(getattr(self.layer4, "0").downsample, "1")(layer4_0_downsample_0);  layer4_0_downsample_0 = None
    add_6 = layer4_0_bn2 + layer4_0_downsample_1;  layer4_0_bn2 = layer4_0_downsample_1 = None
    layer4_0_relu_1 = getattr(self.layer4, "0").relu(add_6);  add_6 = None
    layer4_1_conv1 = getattr(self.layer4, "1").conv1(layer4_0_relu_1)
    layer4_1_bn1 = getattr(self.layer4, "1").bn1(layer4_1_conv1);  layer4_1_conv1 = None
    layer4_1_relu = getattr(self.layer4, "1").relu(layer4_1_bn1);  layer4_1_bn1 = None
    layer4_1_conv2 = getattr(self.layer4, "1").conv2(layer4_1_relu);  layer4_1_relu = None
    layer4_1_bn2 = getattr(self.layer4, "1").bn2(layer4_1_conv2);  layer4_1_conv2 = None
    add_7 = layer4_1_bn2 + layer4_0_relu_1;  layer4_1_bn2 = layer4_0_relu_1 = None
    layer4_1_relu_1 = getattr(self.layer4, "1").relu(add_7);  add_7 = None
    avgpool = self.avgpool(layer4_1_relu_1);  layer4_1_relu_1 = None
    flatten = torch.flatten(avgpool, 1);  avgpool = None
    fc = self.fc(flatten);  flatten = None
    return fc

# ---- nodes (meta written so far) ----
# node | op | target | shape | role | category | FLOPs
# x | placeholder | x | (2, 3, 32, 32) | - | none | 0
# conv1 | call_module | conv1 | (2, 64, 32, 32) | - | conv | 7,077,888
# bn1 | call_module | bn1 | (2, 64, 32, 32) | - | norm | 524,288
# relu | call_module | relu | (2, 64, 32, 32) | - | act | 131,072
# maxpool | call_module | maxpool | (2, 64, 32, 32) | - | none | 0
# layer1_0_conv1 | call_module | layer1.0.conv1 | (2, 64, 32, 32) | - | conv | 150,994,944
# layer1_0_bn1 | call_module | layer1.0.bn1 | (2, 64, 32, 32) | - | norm | 524,288
# layer1_0_relu | call_module | layer1.0.relu | (2, 64, 32, 32) | - | act | 131,072
# layer1_0_conv2 | call_module | layer1.0.conv2 | (2, 64, 32, 32) | - | conv | 150,994,944
# layer1_0_bn2 | call_module | layer1.0.bn2 | (2, 64, 32, 32) | - | norm | 524,288
# add | call_function | add | (2, 64, 32, 32) | - | elementwise | 131,072
# layer1_0_relu_1 | call_module | layer1.0.relu | (2, 64, 32, 32) | - | act | 131,072
# layer1_1_conv1 | call_module | layer1.1.conv1 | (2, 64, 32, 32) | - | conv | 150,994,944
# layer1_1_bn1 | call_module | layer1.1.bn1 | (2, 64, 32, 32) | - | norm | 524,288
# layer1_1_relu | call_module | layer1.1.relu | (2, 64, 32, 32) | - | act | 131,072
# layer1_1_conv2 | call_module | layer1.1.conv2 | (2, 64, 32, 32) | - | conv | 150,994,944
# layer1_1_bn2 | call_module | layer1.1.bn2 | (2, 64, 32, 32) | - | norm | 524,288
# add_1 | call_function | add | (2, 64, 32, 32) | - | elementwise | 131,072
# layer1_1_relu_1 | call_module | layer1.1.relu | (2, 64, 32, 32) | - | act | 131,072
# layer2_0_conv1 | call_module | layer2.0.conv1 | (2, 128, 16, 16) | - | conv | 75,497,472
# layer2_0_bn1 | call_module | layer2.0.bn1 | (2, 128, 16, 16) | - | norm | 262,144
# layer2_0_relu | call_module | layer2.0.relu | (2, 128, 16, 16) | - | act | 65,536
# layer2_0_conv2 | call_module | layer2.0.conv2 | (2, 128, 16, 16) | - | conv | 150,994,944
# layer2_0_bn2 | call_module | layer2.0.bn2 | (2, 128, 16, 16) | - | norm | 262,144
# layer2_0_downsample_0 | call_module | layer2.0.downsample.0 | (2, 128, 16, 16) | - | conv | 8,388,608
# layer2_0_downsample_1 | call_module | layer2.0.downsample.1 | (2, 128, 16, 16) | - | norm | 262,144
# add_2 | call_function | add | (2, 128, 16, 16) | - | elementwise | 65,536
# layer2_0_relu_1 | call_module | layer2.0.relu | (2, 128, 16, 16) | - | act | 65,536
# layer2_1_conv1 | call_module | layer2.1.conv1 | (2, 128, 16, 16) | - | conv | 150,994,944
# layer2_1_bn1 | call_module | layer2.1.bn1 | (2, 128, 16, 16) | - | norm | 262,144
# layer2_1_relu | call_module | layer2.1.relu | (2, 128, 16, 16) | - | act | 65,536
# layer2_1_conv2 | call_module | layer2.1.conv2 | (2, 128, 16, 16) | - | conv | 150,994,944
# layer2_1_bn2 | call_module | layer2.1.bn2 | (2, 128, 16, 16) | - | norm | 262,144
# add_3 | call_function | add | (2, 128, 16, 16) | - | elementwise | 65,536
# layer2_1_relu_1 | call_module | layer2.1.relu | (2, 128, 16, 16) | - | act | 65,536
# layer3_0_conv1 | call_module | layer3.0.conv1 | (2, 256, 8, 8) | - | conv | 75,497,472
# layer3_0_bn1 | call_module | layer3.0.bn1 | (2, 256, 8, 8) | - | norm | 131,072
# layer3_0_relu | call_module | layer3.0.relu | (2, 256, 8, 8) | - | act | 32,768
# layer3_0_conv2 | call_module | layer3.0.conv2 | (2, 256, 8, 8) | - | conv | 150,994,944
# layer3_0_bn2 | call_module | layer3.0.bn2 | (2, 256, 8, 8) | - | norm | 131,072
# layer3_0_downsample_0 | call_module | layer3.0.downsample.0 | (2, 256, 8, 8) | - | conv | 8,388,608
# layer3_0_downsample_1 | call_module | layer3.0.downsample.1 | (2, 256, 8, 8) | - | norm | 131,072
# add_4 | call_function | add | (2, 256, 8, 8) | - | elementwise | 32,768
# layer3_0_relu_1 | call_module | layer3.0.relu | (2, 256, 8, 8) | - | act | 32,768
# layer3_1_conv1 | call_module | layer3.1.conv1 | (2, 256, 8, 8) | - | conv | 150,994,944
# layer3_1_bn1 | call_module | layer3.1.bn1 | (2, 256, 8, 8) | - | norm | 131,072
# layer3_1_relu | call_module | layer3.1.relu | (2, 256, 8, 8) | - | act | 32,768
# layer3_1_conv2 | call_module | layer3.1.conv2 | (2, 256, 8, 8) | - | conv | 150,994,944
# layer3_1_bn2 | call_module | layer3.1.bn2 | (2, 256, 8, 8) | - | norm | 131,072
# add_5 | call_function | add | (2, 256, 8, 8) | - | elementwise | 32,768
# layer3_1_relu_1 | call_module | layer3.1.relu | (2, 256, 8, 8) | - | act | 32,768
# layer4_0_conv1 | call_module | layer4.0.conv1 | (2, 512, 4, 4) | - | conv | 75,497,472
# layer4_0_bn1 | call_module | layer4.0.bn1 | (2, 512, 4, 4) | - | norm | 65,536
# layer4_0_relu | call_module | layer4.0.relu | (2, 512, 4, 4) | - | act | 16,384
# layer4_0_conv2 | call_module | layer4.0.conv2 | (2, 512, 4, 4) | - | conv | 150,994,944
# layer4_0_bn2 | call_module | layer4.0.bn2 | (2, 512, 4, 4) | - | norm | 65,536
# layer4_0_downsample_0 | call_module | layer4.0.downsample.0 | (2, 512, 4, 4) | - | conv | 8,388,608
# layer4_0_downsample_1 | call_module | layer4.0.downsample.1 | (2, 512, 4, 4) | - | norm | 65,536
# add_6 | call_function | add | (2, 512, 4, 4) | - | elementwise | 16,384
# layer4_0_relu_1 | call_module | layer4.0.relu | (2, 512, 4, 4) | - | act | 16,384
# layer4_1_conv1 | call_module | layer4.1.conv1 | (2, 512, 4, 4) | - | conv | 150,994,944
# layer4_1_bn1 | call_module | layer4.1.bn1 | (2, 512, 4, 4) | - | norm | 65,536
# layer4_1_relu | call_module | layer4.1.relu | (2, 512, 4, 4) | - | act | 16,384
# layer4_1_conv2 | call_module | layer4.1.conv2 | (2, 512, 4, 4) | - | conv | 150,994,944
# layer4_1_bn2 | call_module | layer4.1.bn2 | (2, 512, 4, 4) | - | norm | 65,536
# add_7 | call_function | add | (2, 512, 4, 4) | - | elementwise | 16,384
# layer4_1_relu_1 | call_module | layer4.1.relu | (2, 512, 4, 4) | - | act | 16,384
# avgpool | call_module | avgpool | (2, 512, 1, 1) | - | pool | 16,384
# flatten | call_function | flatten | (2, 512) | - | none | 0
# fc | call_module | fc | (2, 10) | - | linear | 20,480
# output | output | output | (2, 10) | - | none | 0

# ---- weight modules called by the graph ----
# module | type | weight | non-zeros
# conv1 | Conv2d | (64, 3, 3, 3) | dense
# bn1 | BatchNorm2d | (64,) | dense
# layer1.0.conv1 | Conv2d | (64, 64, 3, 3) | dense
# layer1.0.bn1 | BatchNorm2d | (64,) | dense
# layer1.0.conv2 | Conv2d | (64, 64, 3, 3) | dense
# layer1.0.bn2 | BatchNorm2d | (64,) | dense
# layer1.1.conv1 | Conv2d | (64, 64, 3, 3) | dense
# layer1.1.bn1 | BatchNorm2d | (64,) | dense
# layer1.1.conv2 | Conv2d | (64, 64, 3, 3) | dense
# layer1.1.bn2 | BatchNorm2d | (64,) | dense
# layer2.0.conv1 | Conv2d | (128, 64, 3, 3) | dense
# layer2.0.bn1 | BatchNorm2d | (128,) | dense
# layer2.0.conv2 | Conv2d | (128, 128, 3, 3) | dense
# layer2.0.bn2 | BatchNorm2d | (128,) | dense
# layer2.0.downsample.0 | Conv2d | (128, 64, 1, 1) | dense
# layer2.0.downsample.1 | BatchNorm2d | (128,) | dense
# layer2.1.conv1 | Conv2d | (128, 128, 3, 3) | dense
# layer2.1.bn1 | BatchNorm2d | (128,) | dense
# layer2.1.conv2 | Conv2d | (128, 128, 3, 3) | dense
# layer2.1.bn2 | BatchNorm2d | (128,) | dense
# layer3.0.conv1 | Conv2d | (256, 128, 3, 3) | dense
# layer3.0.bn1 | BatchNorm2d | (256,) | dense
# layer3.0.conv2 | Conv2d | (256, 256, 3, 3) | dense
# layer3.0.bn2 | BatchNorm2d | (256,) | dense
# layer3.0.downsample.0 | Conv2d | (256, 128, 1, 1) | dense
# layer3.0.downsample.1 | BatchNorm2d | (256,) | dense
# layer3.1.conv1 | Conv2d | (256, 256, 3, 3) | dense
# layer3.1.bn1 | BatchNorm2d | (256,) | dense
# layer3.1.conv2 | Conv2d | (256, 256, 3, 3) | dense
# layer3.1.bn2 | BatchNorm2d | (256,) | dense
# layer4.0.conv1 | Conv2d | (512, 256, 3, 3) | dense
# layer4.0.bn1 | BatchNorm2d | (512,) | dense
# layer4.0.conv2 | Conv2d | (512, 512, 3, 3) | dense
# layer4.0.bn2 | BatchNorm2d | (512,) | dense
# layer4.0.downsample.0 | Conv2d | (512, 256, 1, 1) | dense
# layer4.0.downsample.1 | BatchNorm2d | (512,) | dense
# layer4.1.conv1 | Conv2d | (512, 512, 3, 3) | dense
# layer4.1.bn1 | BatchNorm2d | (512,) | dense
# layer4.1.conv2 | Conv2d | (512, 512, 3, 3) | dense
# layer4.1.bn2 | BatchNorm2d | (512,) | dense
# fc | Linear | (10, 512) | dense
