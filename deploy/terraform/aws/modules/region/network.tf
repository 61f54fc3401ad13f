locals {
  name    = "${var.cluster_name}-${var.region}"
  letters = ["a", "b", "c"]
  # Nodes and pods (VPC CNI): three /20s. Internal NLB: three /24s starting at
  # x.x.64.0 (addresses x.x.64.10, .65.10, .66.10 are the replication NLB's).
  # Public NLB and NAT: three /24s starting at x.x.80.0.
  private_subnets = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i)]
  lb_subnets      = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 64 + i)]
  public_subnets  = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 80 + i)]
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = local.name
  }
}

# No rules: nothing may use the default security group.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id

  tags = {
    Name = "${local.name}-default-deny"
  }
}

resource "aws_subnet" "private" {
  count                = 3
  vpc_id               = aws_vpc.this.id
  cidr_block           = local.private_subnets[count.index]
  availability_zone_id = var.availability_zone_ids[count.index]

  tags = {
    Name                                  = "${local.name}-nodes-${local.letters[count.index]}"
    "kubernetes.io/cluster/${local.name}" = "shared"
  }
}

resource "aws_subnet" "lb" {
  count                = 3
  vpc_id               = aws_vpc.this.id
  cidr_block           = local.lb_subnets[count.index]
  availability_zone_id = var.availability_zone_ids[count.index]

  tags = {
    Name                                  = "${local.name}-lb-${local.letters[count.index]}"
    "kubernetes.io/role/internal-elb"     = "1"
    "kubernetes.io/cluster/${local.name}" = "shared"
  }
}

resource "aws_subnet" "public" {
  count                   = 3
  vpc_id                  = aws_vpc.this.id
  cidr_block              = local.public_subnets[count.index]
  availability_zone_id    = var.availability_zone_ids[count.index]
  map_public_ip_on_launch = false

  tags = {
    Name                                  = "${local.name}-public-${local.letters[count.index]}"
    "kubernetes.io/role/elb"              = "1"
    "kubernetes.io/cluster/${local.name}" = "shared"
  }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = {
    Name = local.name
  }
}

resource "aws_eip" "nat" {
  # checkov:skip=CKV2_AWS_19: Attached to the NAT gateway below, which checkov does not count as an attachment.
  count  = 3
  domain = "vpc"

  tags = {
    Name = "${local.name}-nat-${local.letters[count.index]}"
  }
}

resource "aws_nat_gateway" "this" {
  count         = 3
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id

  tags = {
    Name = "${local.name}-${local.letters[count.index]}"
  }

  depends_on = [aws_internet_gateway.this]
}

# The public NLB's addresses, fixed so Route 53 records and health checks can
# exist before the Service does (aws-load-balancer-eip-allocations).
resource "aws_eip" "public_nlb" {
  # checkov:skip=CKV2_AWS_19: Attached by the AWS Load Balancer Controller to the meridian-global NLB, outside Terraform.
  count  = var.witness ? 0 : 3
  domain = "vpc"

  tags = {
    Name = "${local.name}-public-${local.letters[count.index]}"
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }

  tags = {
    Name = "${local.name}-public"
  }
}

resource "aws_route_table_association" "public" {
  count          = 3
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# One private route table per zone (its own NAT gateway); the peering module
# adds routes to the other regions.
resource "aws_route_table" "private" {
  count  = 3
  vpc_id = aws_vpc.this.id

  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this[count.index].id
  }

  tags = {
    Name = "${local.name}-private-${local.letters[count.index]}"
  }
}

resource "aws_route_table_association" "private" {
  count          = 3
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

resource "aws_route_table_association" "lb" {
  count          = 3
  subnet_id      = aws_subnet.lb[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

resource "aws_cloudwatch_log_group" "flow" {
  name              = "/aws/vpc/${local.name}/flow"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}

resource "aws_flow_log" "this" {
  vpc_id               = aws_vpc.this.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow.arn
  iam_role_arn         = aws_iam_role.flow.arn
}

data "aws_iam_policy_document" "flow_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "flow" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow.arn}:*"]
  }
}

resource "aws_iam_role" "flow" {
  name               = "${local.name}-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_assume.json
}

resource "aws_iam_role_policy" "flow" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow.id
  policy = data.aws_iam_policy_document.flow.json
}
