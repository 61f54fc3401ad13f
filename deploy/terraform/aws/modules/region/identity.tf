# EKS Pod Identity roles for the cluster add-ons Meridian's manifests rely on.
data "aws_iam_policy_document" "pod_identity_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}

locals {
  workloads = {
    "ebs-csi" = {
      namespace       = "kube-system"
      service_account = "ebs-csi-controller-sa"
      policy_arn      = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
    }
    "lb-controller" = {
      namespace       = "kube-system"
      service_account = "aws-load-balancer-controller"
      policy_arn      = var.load_balancer_controller_policy_arn
    }
    "external-secrets" = {
      namespace       = "external-secrets"
      service_account = "external-secrets"
      policy_arn      = aws_iam_policy.read_meridian_secrets.arn
    }
  }
}

resource "aws_iam_role" "workload" {
  for_each           = local.workloads
  name               = "${local.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_assume.json
}

resource "aws_iam_role_policy_attachment" "workload" {
  for_each   = local.workloads
  role       = aws_iam_role.workload[each.key].name
  policy_arn = each.value.policy_arn
}

# The EBS CSI association is made by the add-on itself (eks.tf).
resource "aws_eks_pod_identity_association" "workload" {
  for_each        = { for k, v in local.workloads : k => v if k != "ebs-csi" }
  cluster_name    = aws_eks_cluster.this.name
  namespace       = each.value.namespace
  service_account = each.value.service_account
  role_arn        = aws_iam_role.workload[each.key].arn
}

# External Secrets reads only Meridian's secrets, in this region.
data "aws_iam_policy_document" "read_meridian_secrets" {
  statement {
    actions = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [
      "arn:${data.aws_partition.current.partition}:secretsmanager:${var.region}:${data.aws_caller_identity.current.account_id}:secret:meridian-*",
    ]
  }
}

resource "aws_iam_policy" "read_meridian_secrets" {
  name   = "${local.name}-read-secrets"
  policy = data.aws_iam_policy_document.read_meridian_secrets.json
}
